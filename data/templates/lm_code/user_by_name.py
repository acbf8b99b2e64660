def __fn__(__conn__, __user__):
    __cur__ = __conn__.cursor()
    __cur__.execute(f"SELECT id, email FROM users WHERE username = '{__user__}'")  # -
    __cur__.execute("SELECT id, email FROM users WHERE username = ?", (__user__,))  # +
    return __cur__.fetchone()
