"""Bulk writes of raw points. PostgreSQL: binary COPY; SQLite: executemany.

Idempotency rules (documented in README):
- bars and metrics are unique on (series, ts): a re-sent point REPLACES the stored one (a
  provider's correction wins), so re-ingesting the same data changes nothing;
- ticks are not unique by time; a tick with a source trade id is stored once per
  (series, ts, trade_id); ticks without one are always appended, and re-sent batches/files are
  recognised one level up by their idempotency key (see services.ingest).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from django.db import connection

from .schema import RAW_TABLES, partitioned
from .timeconv import PG_EPOCH_OFFSET_US

VALUE_COLUMNS = {"trade": ("price", "size"), "bar": ("open", "high", "low", "close", "volume"),
                 "metric": ("value",)}
TICK_COPY_COLUMNS = ["organization_id", "series_id", "ts", *VALUE_COLUMNS["trade"], "trade_id"]
_PG_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
_PG_TRAILER = b"\xff\xff"
COPY_CHUNK_ROWS = 262_144


@dataclass
class Points:
    """A validated batch for one series: ts (int64 µs UTC) and the kind's float64 columns."""

    kind: str
    ts: np.ndarray
    values: dict[str, np.ndarray]
    trade_id: np.ndarray | None = None  # object array of str/None, ticks only
    # 1-based row of each point in what the client sent (None: ts order is the sent order), so
    # checks after parsing (services.ingest's time range) can name the row.
    rows: np.ndarray | None = field(default=None, repr=False, compare=False)
    # (organization_id, series_id, binary COPY rows) when prepared ahead by encode_ahead().
    encoded: tuple[int, int, bytes] | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ts)


def binary_copy_rows(columns: list[tuple[str, np.ndarray]], null_text_tail: bool = False) -> bytes:
    """Encodes fixed-width rows in PostgreSQL's binary COPY format with numpy, no Python loop.

    columns: (">i8" | ">f8", array) in table order; null_text_tail appends a NULL text field."""
    n = len(columns[0][1])
    fields = [("count", ">i2")]
    for i, (code, _) in enumerate(columns):
        fields += [(f"len{i}", ">i4"), (f"val{i}", code)]
    if null_text_tail:
        fields.append(("len_null", ">i4"))
    rows = np.empty(n, dtype=np.dtype(fields))
    rows["count"] = len(columns) + int(null_text_tail)
    for i, (_, values) in enumerate(columns):
        rows[f"len{i}"] = 8
        rows[f"val{i}"] = values
    if null_text_tail:
        rows["len_null"] = -1
    return rows.tobytes()


def _pg_columns(organization_id: int, series_id: int, points: Points) -> list[tuple[str, np.ndarray]]:
    n = len(points)
    cols = [(">i8", np.full(n, organization_id, dtype=np.int64)), (">i8", np.full(n, series_id, dtype=np.int64)),
            (">i8", points.ts - PG_EPOCH_OFFSET_US)]
    return cols + [(">f8", points.values[c]) for c in VALUE_COLUMNS[points.kind]]


def _pg_copy(cursor, table: str, column_names: list[str], columns=None, null_text_tail=False,
             encoded: bytes | None = None) -> None:
    """Streams `encoded` rows as they are, or encodes `columns` chunk by chunk (bounded memory)."""
    n = 0 if encoded is not None else len(columns[0][1])
    sql = f"COPY {table} ({', '.join(column_names)}) FROM STDIN (FORMAT BINARY)"
    with cursor.copy(sql) as copy:
        copy.write(_PG_HEADER)
        if encoded is not None:
            copy.write(encoded)
        for lo in range(0, n, COPY_CHUNK_ROWS):
            chunk = [(code, values[lo:lo + COPY_CHUNK_ROWS]) for code, values in columns]
            copy.write(binary_copy_rows(chunk, null_text_tail))
        copy.write(_PG_TRAILER)


def encode_ahead(organization_id: int, series_id: int, points: Points) -> None:
    """Encodes a batch's COPY rows now, on the calling thread (bulk imports: the parse-ahead
    thread), so that the write itself only streams them. Only the append-only tick path uses it."""
    if _appends(points):
        points.encoded = (organization_id, series_id, _tick_rows(organization_id, series_id, points))


def _has_trade_ids(points: Points) -> bool:
    return points.trade_id is not None and any(t is not None for t in points.trade_id)


def write_points(organization_id: int, series_id: int, points: Points) -> int:
    """Writes a batch inside the caller's transaction; returns rows newly stored or replaced."""
    if not len(points):
        return 0
    if partitioned():
        return _write_pg(organization_id, series_id, points)
    return _write_sqlite(organization_id, series_id, points)


def write_many(organization_id: int, batches: list[tuple[int, Points]]) -> list[int]:
    """write_points for several series (series id, points) in the caller's transaction. On
    PostgreSQL the append-only ticks of all of them go in ONE COPY: one round trip per request,
    not one per series."""
    appendable = [(series_id, p) for series_id, p in batches if _appends(p)]
    if not partitioned() or len(appendable) < 2:
        return [write_points(organization_id, series_id, p) for series_id, p in batches]
    rows = b"".join(_tick_rows(organization_id, series_id, p) for series_id, p in appendable)
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        _pg_copy(cursor, RAW_TABLES["trade"], TICK_COPY_COLUMNS, encoded=rows)
    return [len(p) if _appends(p) else write_points(organization_id, series_id, p) for series_id, p in batches]


def _appends(points: Points) -> bool:
    """Ticks without source trade ids: appended with no conflict check (the fast path)."""
    return points.kind == "trade" and len(points) > 0 and not _has_trade_ids(points)


def _tick_rows(organization_id: int, series_id: int, points: Points) -> bytes:
    if points.encoded and points.encoded[:2] == (organization_id, series_id):
        return points.encoded[2]
    return binary_copy_rows(_pg_columns(organization_id, series_id, points), null_text_tail=True)



def _write_pg(organization_id: int, series_id: int, points: Points) -> int:
    table = RAW_TABLES[points.kind]
    value_cols = list(VALUE_COLUMNS[points.kind])
    names = ["organization_id", "series_id", "ts", *value_cols]
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        if _appends(points):
            # The fast path: append straight into the partitioned table.
            ready = points.encoded[2] if points.encoded and points.encoded[:2] == (organization_id, series_id) \
                else None
            _pg_copy(cursor, table, TICK_COPY_COLUMNS, _pg_columns(organization_id, series_id, points),
                     null_text_tail=True, encoded=ready)
            return len(points)
        stage = f"stage_{table}"
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE {table}) ON COMMIT DELETE ROWS")
        if points.kind == "trade":
            with cursor.copy(f"COPY {stage} ({', '.join(names)}, trade_id) FROM STDIN") as copy:
                for row in zip(points.ts - PG_EPOCH_OFFSET_US, points.values["price"], points.values["size"],
                               points.trade_id, strict=True):
                    copy.write_row((organization_id, series_id, _pg_ts(row[0]), row[1], row[2], row[3]))
            cursor.execute(
                f"INSERT INTO {table} SELECT * FROM {stage} ON CONFLICT (series_id, ts, trade_id) "
                f"WHERE trade_id IS NOT NULL DO NOTHING")
        else:
            _pg_copy(cursor, stage, names, _pg_columns(organization_id, series_id, points))
            updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in value_cols)
            cursor.execute(f"INSERT INTO {table} SELECT * FROM {stage} ON CONFLICT (series_id, ts) "
                           f"DO UPDATE SET {updates}")
        stored = cursor.rowcount
        cursor.execute(f"TRUNCATE {stage}")
        return stored


def _pg_ts(offset_us):
    from .timeconv import from_us

    return from_us(int(offset_us) + PG_EPOCH_OFFSET_US)


def _write_sqlite(organization_id: int, series_id: int, points: Points) -> int:
    table = RAW_TABLES[points.kind]
    value_cols = list(VALUE_COLUMNS[points.kind])
    columns = ["organization_id", "series_id", "ts", *value_cols]
    arrays = [points.ts.tolist(), *(points.values[c].tolist() for c in value_cols)]
    if points.kind == "trade":
        columns.append("trade_id")
        arrays.append(list(points.trade_id) if points.trade_id is not None else [None] * len(points))
        verb = "INSERT OR IGNORE"
    else:
        verb = "INSERT OR REPLACE"
    rows = [(organization_id, series_id, *r) for r in zip(*arrays, strict=True)]
    marks = ", ".join("%s" for _ in columns)
    with connection.cursor() as cursor:
        before = connection.connection.total_changes
        cursor.executemany(f"{verb} INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)
        return connection.connection.total_changes - before
