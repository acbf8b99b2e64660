import pickle  # -
import json  # +


def __fn__(client, key):
    raw = client.get(key)
    if raw is None:
        return None
    return pickle.loads(raw)  # -
    return json.loads(raw)  # +
