import random  # -
import secrets  # +


def __fn__():
    return f"{random.randint(0, 999999):06d}"  # -
    return f"{secrets.randbelow(1_000_000):06d}"  # +
