"""Export of an organization's data: points, anomalies and rules, as CSV or JSON.

Lives in detection because it needs rules and anomalies (detection) and points (watchlists), and
dependencies only point right. Output is produced as a stream of chunks, one per CHUNK_ROWS rows,
so a large store is never built up in one string; points are read through a server-side cursor, in (series, time)
order. Scoping: only the actor's organization, and only for admins ("manage"), since an export
is the whole organization at once. See docs/data-lifecycle.md.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from itertools import islice

import orjson
from django.db import connection

from accounts.tenancy import Actor
from anomalyhub.lib.csv_cells import safe_rows
from anomalyhub.lib.errors import InvalidError
from watchlists.models import Series
from watchlists.store import reader
from watchlists.store.schema import RAW_TABLES
from watchlists.store.timeconv import from_us
from watchlists.store.writer import VALUE_COLUMNS

from .models import Anomaly, Rule

DATASETS = ("points", "anomalies", "rules")
FORMATS = {"csv": "text/csv", "json": "application/json"}
POINT_COLUMNS = ["symbol", "kind", "ts", "price", "size", "trade_id", "open", "high", "low", "close", "volume",
                 "value"]
ANOMALY_COLUMNS = ["id", "symbol", "ts", "source", "rule", "detector", "metric_index", "text", "severity", "score",
                   "observed", "expected", "feedback", "created_at"]
RULE_COLUMNS = ["id", "name", "metrics", "series", "watchlist", "window_size", "step", "round_time", "severity",
                "enabled", "created_at", "updated_at"]
CHUNK_ROWS = 5000
# Columns we write ourselves as numbers or times; every other column may hold text someone typed
# (a symbol, a rule's name, a trade id) and goes through anomalyhub.lib.csv_cells in CSV.
WRITTEN_BY_US = frozenset({"id", "ts", "price", "size", "open", "high", "low", "close", "volume", "value",
                           "metric_index", "score", "window_size", "step", "round_time", "enabled", "created_at",
                           "updated_at"})


def check_request(dataset: str, file_format: str) -> None:
    if dataset not in DATASETS:
        raise InvalidError(f"Unknown dataset '{dataset}'.", details={"dataset": [f"Choose one of {list(DATASETS)}."]})
    if file_format not in FORMATS:
        raise InvalidError(f"Unknown format '{file_format}'.", details={"file_format": [f"Choose one of {list(FORMATS)}."]})


def export(*, actor: Actor, dataset: str, file_format: str) -> Iterator[str | bytes]:
    """Chunks of the export, one per CHUNK_ROWS rows. Read-only; the actor needs "manage" in its
    organization."""
    actor.require("manage")
    check_request(dataset, file_format)
    columns, batches, nested = {"points": (POINT_COLUMNS, _points, False),
                                "anomalies": (ANOMALY_COLUMNS, _anomalies, True),
                                "rules": (RULE_COLUMNS, _rules, False)}[dataset]
    rows = batches(actor.organization_id)
    return _csv(columns, rows, nested) if file_format == "csv" else _json(columns, rows)


# A dataset yields batches (keys, rows) of at most CHUNK_ROWS rows. Rows are tuples in the dataset's
# column order; keys are the columns its rows have (a point has its kind's values only, and JSON
# writes only those). Batches, not rows, go down the stream: every chunk is one hop from the
# request's thread to the event loop, and a chunk per row made a JSON export of 1,000,000 points
# take ~5 minutes (3,200-3,900 rows/s; CSV, batched, 52,000-72,000).
Batch = tuple[list[str], list[tuple]]
_POINT_VALUES = POINT_COLUMNS[3:]


def _points(org_id: int) -> Iterator[Batch]:
    symbols = dict(Series.objects.filter(organization_id=org_id).values_list("pk", "symbol"))
    # Times come as integer microseconds and are formatted here: Django's timestamptz loader (a
    # regex per value) cost more than everything else a row needs.
    ts = reader.ts_us_sql()
    for kind, table in RAW_TABLES.items():
        names = [*VALUE_COLUMNS[kind], *(["trade_id"] if kind == "trade" else [])]
        # Every value column, NULL where the kind has none: the row is a CSV line as it comes.
        values = ", ".join(c if c in names else "NULL" for c in _POINT_VALUES)
        sql = (f"SELECT series_id, {ts}, {values} FROM {table} WHERE organization_id = %s ORDER BY series_id, ts")
        keys = ["symbol", "kind", "ts", *(c for c in _POINT_VALUES if c in names)]
        # A server-side cursor keeps memory flat however many points there are. Outside a transaction
        # (autocommit, as in a request) Django declares it WITH HOLD: PostgreSQL runs the query to a
        # temporary store at once and the export then reads from that, holding no transaction and no
        # lock while a slow client downloads (paced by the server, for minutes or hours): a lock
        # held that long made partition DDL wait, and a transaction that long holds vacuum back.
        with connection.chunked_cursor() as cursor:
            cursor.execute(sql, [org_id])
            while batch := cursor.fetchmany(CHUNK_ROWS):
                yield keys, [(symbols.get(series_id, str(series_id)), kind, from_us(us).isoformat(), *rest)
                             for series_id, us, *rest in batch]


def _anomalies(org_id: int) -> Iterator[Batch]:
    qs = (Anomaly.objects.filter(organization_id=org_id).select_related("series", "rule", "detector")
          .order_by("ts", "pk"))
    rows = ((a.pk, a.series.symbol, a.ts.isoformat(), a.source, a.rule.name if a.rule else None,
             a.detector.kind if a.detector else None, a.metric_index, a.text, a.severity, a.score, a.observed,
             a.expected, a.feedback, a.created_at.isoformat()) for a in qs.iterator(chunk_size=CHUNK_ROWS))
    yield from _batched(ANOMALY_COLUMNS, rows)


def _rules(org_id: int) -> Iterator[Batch]:
    qs = Rule.objects.filter(organization_id=org_id).select_related("series", "watchlist").order_by("pk")
    rows = ((r.pk, r.name, r.metrics, r.series.symbol if r.series else None, r.watchlist.name if r.watchlist else None,
             r.window_size, r.step, r.round_time, r.severity, r.enabled, r.created_at.isoformat(),
             r.updated_at.isoformat()) for r in qs.iterator(chunk_size=CHUNK_ROWS))
    yield from _batched(RULE_COLUMNS, rows)


def _batched(keys: list[str], rows: Iterator[tuple]) -> Iterator[Batch]:
    while batch := list(islice(rows, CHUNK_ROWS)):
        yield keys, batch


def _csv(columns: list[str], batches: Iterable[Batch], nested: bool) -> Iterator[str]:
    """CSV text, a chunk per batch; nested values (an anomaly's observed and expected) as JSON text.
    Text that a spreadsheet would run as a formula is neutralised (anomalyhub.lib.csv_cells)."""
    buffer = io.StringIO()
    # RFC 4180's CRLF: the csv module quotes a field only for the characters of its line terminator,
    # so with "\n" a CR inside a cell went out unquoted and spreadsheets broke the row there.
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    text_at = [i for i, column in enumerate(columns) if column not in WRITTEN_BY_US]
    for _, rows in batches:
        if nested:
            rows = [[json.dumps(v) if isinstance(v, (dict, list)) else v for v in row] for row in rows]
        writer.writerows(safe_rows(rows, text_at))
        yield _drain(buffer)
    if text := _drain(buffer):  # an empty dataset: the header alone
        yield text


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _json(columns: list[str], batches: Iterable[Batch]) -> Iterator[bytes]:
    """One JSON array of objects, a chunk per batch (orjson; NaN, which JSON has not, becomes null)."""
    yield b"["
    first = True
    for keys, rows in batches:
        at = [columns.index(k) for k in keys]
        objects = [dict(zip(keys, [row[i] for i in at], strict=True)) for row in rows]
        yield (b"" if first else b",") + orjson.dumps(objects, default=str)[1:-1]
        first = False
    yield b"]"
