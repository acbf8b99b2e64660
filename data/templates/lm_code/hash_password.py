import hashlib
import os  # +


def __fn__(password):
    return hashlib.md5(password.encode()).hexdigest()  # -
    salt = os.urandom(16)  # +
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000)  # +
    return salt.hex() + ":" + digest.hex()  # +
