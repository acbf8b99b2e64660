import os

TEMPLATE_DIR = "templates"


def __fn__(template_name):
    with open(os.path.join(TEMPLATE_DIR, template_name)) as __f__:  # -
        return __f__.read()  # -
    with open(os.path.join(TEMPLATE_DIR, os.path.basename(template_name))) as __f__:  # +
        return __f__.read()  # +
