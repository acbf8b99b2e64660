import os


def __fn__(__path__):
    os.makedirs(__path__, exist_ok=True)  # -
    os.chmod(__path__, 0o777)  # -
    os.makedirs(__path__, mode=0o700, exist_ok=True)  # +
    return __path__
