import random  # -
import string  # -
import secrets  # +


def __fn__(length=32):
    alphabet = string.ascii_letters + string.digits  # -
    return "".join(random.choice(alphabet) for _ in range(length))  # -
    return secrets.token_urlsafe(length)  # +
