"""Creates time partitions ahead of writes (PostgreSQL only).

Partitions are created in their own short transaction *before* the write transaction: creating a
partition locks the parent table, and holding that lock for a whole batch would stall every other
writer."""

from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction

from .schema import PARTITION_SPAN, partitions_between

_known: set[str] = set()
# DDL on a partition (CREATE TABLE .. PARTITION OF, DROP TABLE) takes an ACCESS EXCLUSIVE lock on the
# parent table. Queued behind a long read of that table (an export streams from one transaction for
# minutes), it would hold up every insert into the table, every organization's, until the read ended
# (measured: an insert into another partition waited as long as the read). So it waits this long at
# most and fails with LockNotAvailable: an ingest answers 503 and is retried, retention drops the
# partition on its next run.
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


def ensure_partitions(table: str, first: datetime, last: datetime) -> None:
    if connection.vendor != "postgresql":
        return
    needed = [p for p in partitions_between(table, first, last) if p[0] not in _known]
    if not needed:
        return
    # Normally called outside any transaction; inside one (tests, nested services) the partition
    # commits or rolls back with it, so it is not cached as known.
    committed = not connection.in_atomic_block
    with partition_ddl() as cursor:
        for name, start, end in needed:
            cursor.execute(f"CREATE TABLE IF NOT EXISTS {name} PARTITION OF {table} "
                           f"FOR VALUES FROM (%s) TO (%s)", [start, end])
    if committed:
        _known.update(name for name, _, _ in needed)


def ensure_partitions_ahead(months: int = 2) -> None:
    """Creates partitions for now .. now + months for every raw table (beat task)."""
    now = datetime.now(UTC)
    for table in PARTITION_SPAN:
        ensure_partitions(table, now - timedelta(days=1), now + timedelta(days=31 * months))


def forget_known_partitions() -> None:
    """Tests drop and recreate tables; the cache must not outlive them."""
    _known.clear()
