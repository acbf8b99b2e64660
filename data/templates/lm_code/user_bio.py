from flask import render_template_string, request
from markupsafe import Markup  # -


@app.route("/bio", methods=["POST"])
def __fn__():
    bio = request.form["bio"]
    return render_template_string("<div class='bio'>{{ bio }}</div>", bio=Markup(bio))  # -
    return render_template_string("<div class='bio'>{{ bio }}</div>", bio=bio)  # +
