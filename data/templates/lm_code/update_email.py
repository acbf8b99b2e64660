def __fn__(__conn__, user_id, new_email):
    __conn__.execute(f"UPDATE users SET email = '{new_email}' WHERE id = {user_id}")  # -
    __conn__.execute("UPDATE users SET email = ? WHERE id = ?", (new_email, user_id))  # +
    __conn__.commit()
