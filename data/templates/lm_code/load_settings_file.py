import json  # +
# +

def __fn__(__path__):
    settings = {}  # -
    with open(__path__) as __f__:
        exec(__f__.read(), {}, settings)  # -
        settings = json.load(__f__)  # +
    return settings
