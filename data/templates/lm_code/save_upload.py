import os

from flask import request
from werkzeug.utils import secure_filename  # +


@app.route("/upload", methods=["POST"])
def __fn__():
    __f__ = request.files["file"]
    __f__.save(os.path.join("__root__", __f__.filename))  # -
    __f__.save(os.path.join("__root__", secure_filename(__f__.filename)))  # +
    return "uploaded"
