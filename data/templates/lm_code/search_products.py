def __fn__(__conn__, term):
    __cur__ = __conn__.cursor()
    __cur__.execute("SELECT name, price FROM products WHERE name LIKE '%" + term + "%'")  # -
    __cur__.execute("SELECT name, price FROM products WHERE name LIKE ?", (f"%{term}%",))  # +
    return __cur__.fetchall()
