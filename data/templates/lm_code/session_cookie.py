import base64
import pickle  # -
import json  # +

from flask import request


def __fn__():
    cookie = request.cookies.get("session", "")
    return pickle.loads(base64.b64decode(cookie))  # -
    return json.loads(base64.b64decode(cookie))  # +
