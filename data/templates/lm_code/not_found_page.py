from flask import request
from markupsafe import escape  # +


@app.errorhandler(404)
def __fn__(err):
    return f"<p>Nothing found at {request.path}</p>", 404  # -
    return f"<p>Nothing found at {escape(request.path)}</p>", 404  # +
