import subprocess


def __fn__(__path__):
    __out__ = subprocess.check_output("du -sh " + __path__, shell=True, text=True)  # -
    __out__ = subprocess.check_output(["du", "-sh", __path__], text=True)  # +
    return __out__.split()[0]
