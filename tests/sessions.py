"""Another PostgreSQL session on the test database, beside Django's: for tests where a second
client holds a lock or a transaction (use with django_db(transaction=True), so it sees committed data)."""

import psycopg
from django.db import connection


def other_session(*, autocommit: bool = False) -> psycopg.Connection:
    db = connection.settings_dict
    params = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"],
              "port": db["PORT"]}
    return psycopg.connect(autocommit=autocommit, **{k: str(v) for k, v in params.items() if v})
