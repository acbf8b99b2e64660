from flask import Flask, request
from markupsafe import escape  # +

app = Flask(__name__)


@app.route("/hello")
def __fn__():
    name = request.args.get("name", "world")
    return f"<h1>Hello, {name}!</h1>"  # -
    return f"<h1>Hello, {escape(name)}!</h1>"  # +
