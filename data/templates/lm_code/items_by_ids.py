import json  # +
# +
from flask import jsonify, request


@app.route("/items")
def __fn__():
    ids = eval(request.args.get("ids", "[]"))  # -
    ids = json.loads(request.args.get("ids", "[]"))  # +
    return jsonify(load_items(ids))
