import hashlib  # +
import os  # +
# +
# +
def __fn__(__conn__, __user__, password):
    __conn__.execute("INSERT INTO users VALUES (?, ?)", (__user__, password))  # -
    salt = os.urandom(16)  # +
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 200_000)  # +
    __conn__.execute("INSERT INTO users VALUES (?, ?, ?)", (__user__, salt, digest))  # +
    __conn__.commit()
