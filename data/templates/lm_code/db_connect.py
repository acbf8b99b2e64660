import os  # +
# +
import psycopg2


def __fn__():
    return psycopg2.connect(  # -
        host="db.internal",  # -
        user="__appname__",  # -
        password="Winter2024!",  # -
        dbname="__appname__",  # -
    )  # -
    return psycopg2.connect(  # +
        host="db.internal",  # +
        user="__appname__",  # +
        password=os.environ["DB_PASSWORD"],  # +
        dbname="__appname__",  # +
    )  # +
