import os

TMP_DIR = "/tmp/__appname__"


def __fn__(__fname__):
    os.remove(os.path.join(TMP_DIR, __fname__))  # -
    __path__ = os.path.realpath(os.path.join(TMP_DIR, __fname__))  # +
    if os.path.dirname(__path__) != os.path.realpath(TMP_DIR):  # +
        raise ValueError("invalid file name")  # +
    os.remove(__path__)  # +
