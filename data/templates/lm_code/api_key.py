import hashlib  # -
import time  # -
import secrets  # +


def __fn__(customer_id):
    return hashlib.sha1(f"{customer_id}{time.time()}".encode()).hexdigest()  # -
    return secrets.token_hex(20)  # +
