from html import escape  # +
# +

def __fn__(comments):
    items = []
    for c in comments:
        items.append(f"<li>{c['author']}: {c['text']}</li>")  # -
        items.append(f"<li>{escape(c['author'])}: {escape(c['text'])}</li>")  # +
    return "<ul>" + "".join(items) + "</ul>"
