import hashlib  # +
import hmac  # +
# +
# +
def __fn__(__conn__, __user__, password):
    row = __conn__.execute("SELECT password FROM users WHERE username = ?", (__user__,))  # -
    stored = row.fetchone()  # -
    return stored is not None and stored[0] == password  # -
    row = __conn__.execute("SELECT salt, pw_hash FROM users WHERE username = ?", (__user__,))  # +
    stored = row.fetchone()  # +
    if stored is None:  # +
        return False  # +
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), stored[0], 200_000)  # +
    return hmac.compare_digest(digest, stored[1])  # +
