import pickle  # -
import json  # +


def __fn__(cache_path):
    with open(cache_path, "rb") as __f__:  # -
        return pickle.load(__f__)  # -
    with open(cache_path) as __f__:  # +
        return json.load(__f__)  # +
