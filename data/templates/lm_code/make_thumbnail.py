import subprocess

from flask import request


@app.route("/thumbnail", methods=["POST"])
def __fn__():
    src = request.form["image"]
    size = request.form.get("size", "128x128")
    subprocess.call(f"convert {src} -resize {size} thumb.png", shell=True)  # -
    subprocess.call(["convert", src, "-resize", size, "thumb.png"])  # +
    return "ok"
