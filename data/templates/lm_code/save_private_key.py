import os


def __fn__(key_bytes, __path__):
    with open(__path__, "wb") as __f__:
        __f__.write(key_bytes)
    os.chmod(__path__, 0o666)  # -
    os.chmod(__path__, 0o600)  # +
