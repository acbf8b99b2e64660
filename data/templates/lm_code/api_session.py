import requests


def __fn__(token):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    session.verify = False  # -
    return session
