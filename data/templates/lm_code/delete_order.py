def __fn__(__conn__, order_id):
    with __conn__.cursor() as __cur__:
        __cur__.execute("DELETE FROM orders WHERE id = %s" % order_id)  # -
        __cur__.execute("DELETE FROM orders WHERE id = %s", (order_id,))  # +
    __conn__.commit()
