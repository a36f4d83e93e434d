"""Export of an organization's data: points, anomalies and rules, as CSV or JSON.

Lives in detection because it needs rules and anomalies (detection) and points (watchlists), and
dependencies only point right. Output is produced as a stream of text chunks so a large store is
never built up in one string; points are read through a server-side cursor, in (series, time)
order. Scoping: only the actor's organization, and only for admins ("manage"), since an export
is the whole organization at once. See docs/data-lifecycle.md.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator

from django.db import connection, transaction

from accounts.errors import InvalidError
from accounts.tenancy import Actor
from watchlists.models import Series
from watchlists.store.schema import RAW_TABLES
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


def check_request(dataset: str, file_format: str) -> None:
    if dataset not in DATASETS:
        raise InvalidError(f"Unknown dataset '{dataset}'.", details={"dataset": [f"Choose one of {list(DATASETS)}."]})
    if file_format not in FORMATS:
        raise InvalidError(f"Unknown format '{file_format}'.", details={"file_format": [f"Choose one of {list(FORMATS)}."]})


def export(*, actor: Actor, dataset: str, file_format: str) -> Iterator[str]:
    """Text chunks of the export. Read-only; the actor needs "manage" in its organization."""
    actor.require("manage")
    check_request(dataset, file_format)
    columns, rows = {"points": (POINT_COLUMNS, _points), "anomalies": (ANOMALY_COLUMNS, _anomalies),
                     "rules": (RULE_COLUMNS, _rules)}[dataset]
    rows_iter = rows(actor.organization_id)
    return _csv(columns, rows_iter) if file_format == "csv" else _json(rows_iter)


def _points(org_id: int) -> Iterator[dict]:
    series = {s.pk: s for s in Series.objects.filter(organization_id=org_id)}
    for kind, table in RAW_TABLES.items():
        names = list(VALUE_COLUMNS[kind]) + (["trade_id"] if kind == "trade" else [])
        sql = (f"SELECT series_id, ts, {', '.join(names)} FROM {table} WHERE organization_id = %s "
               "ORDER BY series_id, ts")
        # A server-side cursor needs a transaction; it keeps memory flat however many points there are.
        with transaction.atomic(), connection.chunked_cursor() as cursor:
            cursor.execute(sql, [org_id])
            while batch := cursor.fetchmany(CHUNK_ROWS):
                for series_id, when, *values in batch:
                    s = series.get(series_id)
                    yield {"symbol": s.symbol if s else str(series_id), "kind": kind, "ts": _iso(when),
                           **dict(zip(names, values, strict=True))}


def _iso(when) -> str:
    if isinstance(when, int):  # SQLite stores microseconds
        from watchlists.store.timeconv import from_us

        when = from_us(when)
    return when.isoformat()


def _anomalies(org_id: int) -> Iterator[dict]:
    qs = (Anomaly.objects.filter(organization_id=org_id).select_related("series", "rule", "detector")
          .order_by("ts", "pk"))
    for a in qs.iterator(chunk_size=CHUNK_ROWS):
        yield {"id": a.pk, "symbol": a.series.symbol, "ts": a.ts.isoformat(), "source": a.source,
               "rule": a.rule.name if a.rule else None, "detector": a.detector.kind if a.detector else None,
               "metric_index": a.metric_index, "text": a.text, "severity": a.severity, "score": a.score,
               "observed": a.observed, "expected": a.expected, "feedback": a.feedback,
               "created_at": a.created_at.isoformat()}


def _rules(org_id: int) -> Iterator[dict]:
    for r in Rule.objects.filter(organization_id=org_id).select_related("series", "watchlist").order_by("pk"):
        yield {"id": r.pk, "name": r.name, "metrics": r.metrics, "series": r.series.symbol if r.series else None,
               "watchlist": r.watchlist.name if r.watchlist else None, "window_size": r.window_size,
               "step": r.step, "round_time": r.round_time, "severity": r.severity, "enabled": r.enabled,
               "created_at": r.created_at.isoformat(), "updated_at": r.updated_at.isoformat()}


def _csv(columns: list[str], rows: Iterable[dict]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for n, row in enumerate(rows, 1):
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
        if n % CHUNK_ROWS == 0:
            yield _drain(buffer)
    yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def _json(rows: Iterable[dict]) -> Iterator[str]:
    yield "["
    for n, row in enumerate(rows):
        yield ("," if n else "") + json.dumps(row, default=str)
    yield "]"
