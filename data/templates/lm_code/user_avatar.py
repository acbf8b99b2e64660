import re  # +
# +
from flask import abort, request

AVATAR_DIR = "__root__/avatars"


@app.route("/avatar")
def __fn__():
    __user__ = request.args.get("user", "")
    if not re.fullmatch(r"[A-Za-z0-9_]+", __user__):  # +
        abort(400)  # +
    with open(f"{AVATAR_DIR}/{__user__}.png", "rb") as __f__:
        return __f__.read(), 200, {"Content-Type": "image/png"}
