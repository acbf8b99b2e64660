from flask import request
from markupsafe import escape  # +


@app.route("/search")
def __fn__():
    q = request.args.get("q", "")
    hits = search_index(q)
    return f"<p>{len(hits)} results for {q}</p>"  # -
    return f"<p>{len(hits)} results for {escape(q)}</p>"  # +
