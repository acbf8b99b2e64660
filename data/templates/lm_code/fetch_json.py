import requests


def __fn__(__url__):
    resp = requests.get(__url__, verify=False, timeout=10)  # -
    resp = requests.get(__url__, timeout=10)  # +
    resp.raise_for_status()
    return resp.json()
