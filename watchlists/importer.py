"""Bulk CSV import (history files): chunked, resumable, and fast.

A file is cut into chunks of whole rows; each chunk is one atomic ingest whose idempotency key is
its content hash, so re-running an import (after a crash, or after fixing one bad row) stores
only the chunks not stored before. The next chunk is parsed in a thread while the current one is
being COPYed, so parsing and the database's work overlap.
"""

from __future__ import annotations

import gzip
import hashlib
import io
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from accounts.tenancy import Actor

from . import ingest, services
from .models import IngestBatch, Series

CHUNK_ROWS = 250_000
READ_BLOCK = 8 << 20
KIND_BY_HEADER = [({"price", "size"}, "trade"), ({"open", "high", "low", "close", "volume"}, "bar"),
                  ({"value"}, "metric")]


@dataclass
class ImportReport:
    rows: int = 0
    stored: int = 0
    chunks: int = 0
    skipped_chunks: int = 0


def open_file(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def read_header(path: Path) -> list[str]:
    with open_file(path) as fh:
        return [c.strip().lower() for c in fh.readline().decode("utf-8-sig").strip().split(",")]


def kind_for_header(columns: list[str]) -> str | None:
    return next((kind for needed, kind in KIND_BY_HEADER if needed <= set(columns)), None)


def row_chunks(path: Path, rows: int = CHUNK_ROWS) -> Iterator[tuple[bytes, bytes, int]]:
    """Yields (header, body, first_row) with `rows` complete lines per body (the last may be shorter)."""
    with open_file(path) as fh:
        header = fh.readline()
        buf, first = b"", 1
        while True:
            block = fh.read(READ_BLOCK)
            buf += block
            ends = np.flatnonzero(np.frombuffer(buf, dtype=np.uint8) == 10)
            start, taken = 0, 0
            while len(ends) - taken >= rows:
                cut = int(ends[taken + rows - 1]) + 1
                yield header, buf[start:cut], first
                first += rows
                start, taken = cut, taken + rows
            buf = buf[start:]
            if not block:
                if buf.strip():
                    yield header, buf, first
                return


def _parse(series: Series, tz: str, header: bytes, body: bytes, first_row: int):
    key = f"csv:{series.pk}:{hashlib.sha256(body).hexdigest()}"
    if IngestBatch.objects.filter(organization_id=series.organization_id, key=key).exists():
        return key, None, first_row
    frame = pd.read_csv(io.BytesIO(header + body), dtype={c: str for c in ingest.TIME_COLUMNS},
                        skipinitialspace=True)
    try:
        points = ingest.validate(frame, series.kind, tz)
    except ingest.BatchInvalid as exc:
        # Report file line numbers, not chunk rows: line 1 is the header.
        for err in exc.details.get("errors", []):
            if err["row"]:
                err["line"] = err["row"] + first_row
        raise
    return key, points, first_row


def import_csv(*, actor: Actor, series: Series, path: Path, progress: Callable[[int], None] | None = None,
               chunk_rows: int = CHUNK_ROWS) -> ImportReport:
    """Imports a CSV (optionally .gz) into a series. Resumable and idempotent per chunk (see module doc).

    A bad row stops the import with BatchInvalid naming its file line; chunks before it stay stored."""
    actor.require("ingest")
    tz = services.series_timezone(series)
    report = ImportReport()
    chunks = row_chunks(path, chunk_rows)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = _submit_next(pool, chunks, series, tz)
        while pending is not None:
            key, points, _ = pending.result()
            pending = _submit_next(pool, chunks, series, tz)  # parse ahead while this chunk is written
            report.chunks += 1
            if points is None:
                report.skipped_chunks += 1
                continue
            (result,) = services.ingest(actor=actor, batches=[(series, points)], idempotency_key=key, max_rows=None)
            report.rows += result.received
            report.stored += result.stored
            if progress:
                progress(result.received)
    if report.stored:
        analyze_raw_table(series.kind)
    return report


def analyze_raw_table(kind: str) -> None:
    """Fresh partitions have no statistics; without them the planner sorts a million rows on disk
    for the rollup refresh that follows an import (measured)."""
    from django.db import connection

    from .store.schema import RAW_TABLES

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {RAW_TABLES[kind]}")


def _submit_next(pool, chunks, series, tz):
    nxt = next(chunks, None)
    return None if nxt is None else pool.submit(_parse, series, tz, *nxt)
