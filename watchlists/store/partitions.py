"""Creates time partitions ahead of writes (PostgreSQL only).

Partitions are created *before* the write transaction, each in its own short transaction, and
never with a lock readers or writers of the parent table need: a partition is made as a plain
table (its own ACCESS EXCLUSIVE lock, on a table nobody uses yet) and then attached, which locks
the parent only in SHARE UPDATE EXCLUSIVE mode (`CREATE TABLE .. PARTITION OF` takes ACCESS
EXCLUSIVE on the parent: 1,189 of them in one transaction held another organization's read of
the ticks for 32 s). How many one batch may create is bounded by the caller
(watchlists.timerange, INGEST_MAX_NEW_PARTITIONS)."""

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from .schema import PARTITION_SPAN, partitioned, partitions_between

_known: set[str] = set()
# Dropping a partition (retention) takes an ACCESS EXCLUSIVE lock on the parent table. Queued behind
# a long read of that table (an export streams from one transaction for minutes), it would hold up
# every insert into the table, every organization's, until the read ended (measured: an insert into
# another partition waited as long as the read). So partition DDL waits this long at most and fails
# with LockNotAvailable: an ingest answers 503 and is retried, retention drops the partition on its
# next run. (Attaching a new partition takes a weaker lock that such a read does not block.)
DDL_LOCK_TIMEOUT = "2s"


@contextmanager
def partition_ddl():
    """A cursor in a transaction for partition DDL: serialised with every other creator and dropper
    (without it two workers race on the catalog and one fails), and never waiting more than
    DDL_LOCK_TIMEOUT for a lock."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'")
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext('anomalyhub.partitions'))")
        yield cursor
        cursor.execute("SET LOCAL lock_timeout = DEFAULT")  # inside a caller's transaction: for this block only


def missing_partitions(table: str, first: datetime, last: datetime) -> list[tuple[str, datetime, datetime]]:
    """The partitions of `table` that times first..last need and that are not attached yet."""
    if not partitioned():
        return []
    needed = [p for p in partitions_between(table, first, last) if p[0] not in _known]
    if not needed:
        return []
    with connection.cursor() as cursor:
        cursor.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = %s::regclass AND c.relname = ANY(%s)", [table, [p[0] for p in needed]])
        attached = {row[0] for row in cursor.fetchall()}
    if not connection.in_atomic_block:  # committed: safe to remember
        _known.update(attached)
    return [p for p in needed if p[0] not in attached]


def create_partitions(table: str, partitions: list[tuple[str, datetime, datetime]]) -> None:
    """Creates and attaches each partition in its own transaction (see the module's doc).

    Normally called outside any transaction; inside one (tests, nested services) the partitions
    commit or roll back with it, so they are not cached as known."""
    committed = not connection.in_atomic_block
    for name, start, end in partitions:
        with partition_ddl() as cursor:
            # A crash between the two statements of an earlier attempt cannot leave a half-made
            # partition: both are in this transaction.
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {name} (LIKE {table} INCLUDING ALL)")
            cursor.execute("SELECT 1 FROM pg_inherits WHERE inhrelid = %s::regclass", [name])
            if cursor.fetchone() is None:
                cursor.execute(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM (%s) TO (%s)",
                               [start, end])
        if committed:
            _known.add(name)


def ensure_partitions(table: str, first: datetime, last: datetime) -> None:
    create_partitions(table, missing_partitions(table, first, last))


def ensure_partitions_ahead(months: int = 2) -> None:
    """Creates partitions for now .. now + months for every raw table (beat task)."""
    now = datetime.now(UTC)
    for table in PARTITION_SPAN:
        ensure_partitions(table, now - timedelta(days=1), now + timedelta(days=31 * months))


def forget_known_partitions() -> None:
    """Tests drop and recreate tables; the cache must not outlive them."""
    _known.clear()
