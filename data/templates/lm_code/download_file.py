import os  # -
# -
from flask import Flask, send_file  # -
from flask import Flask, send_from_directory  # +

app = Flask(__name__)
UPLOAD_DIR = "__root__"


@app.route("/files/<path:__fname__>")
def __fn__(__fname__):
    return send_file(os.path.join(UPLOAD_DIR, __fname__))  # -
    return send_from_directory(UPLOAD_DIR, __fname__)  # +
