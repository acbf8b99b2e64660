def __fn__(__conn__, __user__, pw_hash):
    sql = f"SELECT 1 FROM users WHERE username = '{__user__}' AND pw_hash = '{pw_hash}'"  # -
    row = __conn__.execute(sql).fetchone()  # -
    sql = "SELECT 1 FROM users WHERE username = ? AND pw_hash = ?"  # +
    row = __conn__.execute(sql, (__user__, pw_hash)).fetchone()  # +
    return row is not None
