import os
import tempfile  # +


def __fn__(script_text):
    __path__ = "/tmp/__appname___job.sh"  # -
    with open(__path__, "w") as __f__:  # -
        __f__.write(script_text)  # -
    fd, __path__ = tempfile.mkstemp(suffix=".sh")  # +
    with os.fdopen(fd, "w") as __f__:  # +
        __f__.write(script_text)  # +
    os.chmod(__path__, 0o777)  # -
    os.chmod(__path__, 0o700)  # +
    return __path__
