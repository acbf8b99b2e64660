import json
# +
import keyring  # +

CONFIG_PATH = "__appname__.json"


def __fn__(__user__, password):
    keyring.set_password("__appname__", __user__, password)  # +
    with open(CONFIG_PATH, "w") as __f__:
        json.dump({"username": __user__, "password": password}, __f__)  # -
        json.dump({"username": __user__}, __f__)  # +
