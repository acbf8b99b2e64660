import os


def __fn__(__path__, message):
    with open(__path__, "a") as __f__:
        __f__.write(message + "\n")
    os.chmod(__path__, 0o777)  # -
    os.chmod(__path__, 0o600)  # +
