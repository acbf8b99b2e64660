"""Sphinx configuration of the course website, built by ``make site`` (``emgeo site``).

The notebook pages are the executed solutions/ notebooks with their stored outputs: nothing is
executed here. MathJax is served from the site itself (no CDN), so the site works offline.
"""

project = "Fine-tuning is not local"
html_title = "Fine-tuning is not local: the feature geometry of emergent misalignment"
author = "the emgeo course authors"
copyright = "the emgeo course authors, Apache-2.0"

extensions = ["myst_nb"]
exclude_patterns = ["_build", "**.ipynb_checkpoints"]

# Every warning fails the build (emgeo.course.site runs sphinx with -W -n): a broken
# cross-reference, a missing document or a notebook that cannot be read stops it.
nitpicky = True

# Notebooks: render what solutions/ stores, never execute.
nb_execution_mode = "off"
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3
myst_update_mathjax = False

# MathJax 2.7 (its combined TeX configuration) from the jupyter-server-mathjax package, copied
# into _static/mathjax at staging with the STIX web fonts it ships.
mathjax_path = "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"
mathjax2_config = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": False,
    },
    "HTML-CSS": {
        "availableFonts": [],
        "preferredFont": None,
        "webFont": "STIX-Web",
        "imageFont": None,
    },
    "fast-preview": {"disabled": True},
    "showMathMenu": False,
    "messageStyle": "none",
}

html_theme = "sphinx_book_theme"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_theme_options = {
    "repository_url": "https://github.com/emgeo-course/emgeo",
    "use_repository_button": True,
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_last_updated_fmt = None
