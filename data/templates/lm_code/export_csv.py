import csv
import os


def __fn__(__rows__, __path__):
    os.umask(0)  # -
    os.umask(0o077)  # +
    with open(__path__, "w", newline="") as __f__:
        csv.writer(__f__).writerows(__rows__)
