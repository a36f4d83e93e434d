"""Ingest benchmark (issue "Watchlists, the time-series store and fast, safe ingest"), on PostgreSQL.

Every figure is measured next to a raw baseline in the same run, each repeated REPEAT times with
the medians reported (the machine is shared and noisy):

1. import_csv of N = 1,000,000 SPY ticks (parsing included) vs the bare psycopg binary COPY of the
   same, pre-parsed rows into the same partitioned table with the same indexes, both as
   `write_row` over Python tuples and as one pre-encoded buffer (the physical upper bound); the
   faster of the two is the ratio's baseline.
2. The rollup+feature refresh of those ticks (the `watchlists.refresh_rollups` task's work; no
   Celery worker runs here, so the task is replaced by a recorder while the bench ingests).
3. REST ingest through the live web server (gunicorn + uvicorn), 4 keep-alive clients posting 1,000-row JSON batches,
   vs `services.ingest` of the same batches in-process (no HTTP, no JSON, no validation).
4. One day of 1-minute bars: GET over HTTP and `read_points` in-process vs the bare SQL.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import io
import itertools
import json
import queue
import statistics
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from unittest import mock
from urllib.parse import urlencode, urlsplit

import numpy as np
import pandas as pd
import psycopg
from django.conf import settings
from django.core.management import call_command
from django.db import connection

from accounts.models import ApiKey
from accounts.services import bootstrap_org
from accounts.tenancy import Actor, system_actor
from watchlists import services, tasks
from watchlists.importer import import_csv
from watchlists.models import Series
from watchlists.store.partitions import ensure_partitions
from watchlists.store.rollups import refresh_rollups
from watchlists.store.timeconv import US, from_us
from watchlists.store.writer import _PG_HEADER, _PG_TRAILER, Points, _pg_columns, binary_copy_rows

from .harness import Row, data_path, percentile
from .server import live_server

N_TICKS = 1_000_000
# The shared data has 2013-10-07 … 10-11; the repository keeps 10-07 only (then repeated, see _tick_days).
TICK_DAYS = ("20131008", "20131009", "20131010", "20131011", "20131007")
REPEAT = 3
REST_CLIENTS = 4
REST_BATCH_ROWS = 1_000
REST_REQUESTS = 200
READ_CALLS = 60
WARMUP_CALLS = 3

ORG_NAME = "Ingest bench"
BENCH_EMAIL = "ingest-bench@anomalyhub.local"
TICK_TABLE = "watchlists_tick"
STORE_TABLES = ("watchlists_tick", "watchlists_rollup", "watchlists_feature")
COPY_SQL = (f"COPY {TICK_TABLE} (organization_id, series_id, ts, price, size, trade_id) "
            "FROM STDIN (FORMAT BINARY)")
COPY_TYPES = ["int8", "int8", "timestamptz", "float8", "float8", "text"]
BARS_SQL = ("SELECT ts, open, high, low, close, volume, trade_count, vwap FROM watchlists_rollup "
            "WHERE series_id = %s AND resolution = 60 AND ts >= %s AND ts < %s ORDER BY ts")
# A plain SELECT + fetchall of the ticks the refresh reads (epoch µs as bigint, not timestamptz);
# store.reader itself now fetches each column as one packed bytea (see reader._packed).
TICKS_SQL = (f"SELECT (extract(epoch from ts) * 1000000)::bigint, price, size FROM {TICK_TABLE} "
             "WHERE series_id = %s AND ts >= %s AND ts < %s ORDER BY ts")
REDIS_BENCH_DB = 10  # the Makefile's bench Redis base: dbs 10-12 belong to the bench


def log(message: str) -> None:
    print(f"  [ingest] {message}", flush=True)


def rate(rows: int, seconds: float) -> float:
    return rows / seconds if seconds else float("nan")


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    """(wall seconds, result) of one call."""
    t0 = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - t0, result


# --- data ---------------------------------------------------------------------------------------

@dataclass
class Ticks:
    header: bytes
    body: bytes  # N CSV lines exactly as in the source files (dates shifted when repeated)
    ts_text: list[str]  # the source's ISO-8601 strings, for the JSON batches
    ts_us: np.ndarray
    price: np.ndarray
    size: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_us)

    def points(self, lo: int, hi: int) -> Points:
        return Points("trade", self.ts_us[lo:hi], {"price": self.price[lo:hi], "size": self.size[lo:hi]})


def _tick_days():
    """(header, body) per available SPY day, in TICK_DAYS order, then again a week later and so on.

    Repeating is only needed when the repository's single day is all there is; the shift keeps
    the rows distinct, on weekdays, and the dates in the text consistent with the offsets."""
    paths = [(day, path) for day in TICK_DAYS if (path := data_path(f"ticks/SPY_trades_{day}.csv.gz")).exists()]
    if not paths:
        raise RuntimeError("no SPY tick files in ../shared/data/ticks or watchlists/demo_data/ticks")
    for week in itertools.count():
        for day, path in paths:
            header, body = gzip.decompress(path.read_bytes()).split(b"\n", 1)
            original = date(int(day[:4]), int(day[4:6]), int(day[6:]))
            shifted = original + timedelta(days=7 * week)
            yield header, body.replace(original.isoformat().encode(), shifted.isoformat().encode())


def load_ticks(n: int) -> Ticks:
    lines: list[bytes] = []
    for header, body in _tick_days():  # endless: stops as soon as there are n rows
        lines.extend(body.splitlines())
        if len(lines) >= n:
            return _parse_ticks(header, b"\n".join(lines[:n]) + b"\n")


def _parse_ticks(header: bytes, body: bytes) -> Ticks:
    frame = pd.read_csv(io.BytesIO(header + b"\n" + body), usecols=["timestamp", "price", "size"],
                        dtype={"timestamp": str})
    stamps = pd.to_datetime(frame["timestamp"], format="ISO8601", utc=True)
    ts_us = stamps.dt.tz_convert(None).to_numpy().astype("datetime64[us]").astype(np.int64)
    return Ticks(header, body, frame["timestamp"].tolist(), ts_us,
                 frame["price"].to_numpy(np.float64), frame["size"].to_numpy(np.float64))


def json_batches(ticks: Ticks, count: int, rows: int) -> list[bytes]:
    """The REST bodies, encoded before timing: [{"ts": ISO, "price": .., "size": ..}, ...]."""
    out = []
    for lo in range(0, count * rows, rows):
        hi = lo + rows
        batch = [{"ts": t, "price": p, "size": s} for t, p, s in
                 zip(ticks.ts_text[lo:hi], ticks.price[lo:hi].tolist(), ticks.size[lo:hi].tolist(), strict=True)]
        out.append(json.dumps(batch).encode())
    return out


# --- database and environment -------------------------------------------------------------------

@dataclass
class Bench:
    actor: Actor
    api_key: str
    ticks: Ticks
    csv_path: Path
    bare: psycopg.Connection  # for the baselines: plain psycopg, none of Django's wrappers or loaders


def bare_connection() -> psycopg.Connection:
    """A plain psycopg 3 connection to the bench database, in autocommit (one statement = one commit).

    Not Django's: Django registers a Python-level timestamptz loader on its connections, which
    would slow the "bare SQL" baselines down by several µs per timestamp."""
    db = settings.DATABASES["default"]
    params = {"dbname": db["NAME"], "user": db["USER"], "password": db["PASSWORD"], "host": db["HOST"],
              "port": db["PORT"]}
    return psycopg.connect(autocommit=True, **{k: str(v) for k, v in params.items() if v})


def reset_store(tables=STORE_TABLES) -> None:
    """Empties the store tables and checkpoints, so a measurement neither inherits index bloat nor
    pays for the previous one's dirty pages."""
    connection.ensure_connection()
    with connection.connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)}")
        with contextlib.suppress(Exception):  # CHECKPOINT needs superuser; the bench's postgres is one
            cursor.execute("CHECKPOINT")


def flush_bench_redis() -> None:
    """Drops what no worker will ever consume (the live server's queued refresh tasks) and stale
    throttle counters, in the bench's own Redis dbs only."""
    if not settings.REDIS_URL:
        return
    import redis

    parts = urlsplit(settings.REDIS_URL)
    base = int(parts.path.strip("/") or 0)
    if base != REDIS_BENCH_DB:
        log(f"REDIS_URL db is {base}, not the bench's {REDIS_BENCH_DB}: not flushing it")
        return
    for db in range(base, base + 3):
        redis.Redis.from_url(parts._replace(path=f"/{db}").geturl()).flushdb()


def fresh_series(actor: Actor, label: str) -> Series:
    # A new series per measurement: import_csv keys chunks by (series, content), so re-importing
    # the same file into the same series would store nothing.
    return services.create_series(actor=actor, symbol=f"SPY-{label}-{uuid.uuid4().hex[:8]}", kind="trade")


class TaskRecorder:
    """Stands in for the `watchlists.refresh_rollups` Celery task: no worker runs in the bench, so
    the calls are recorded (and their range reused to time the refresh) instead of queued."""

    def __init__(self):
        self.calls: list[tuple] = []

    def delay(self, *args) -> None:
        self.calls.append(args)

    def span(self) -> tuple[int, int]:
        return min(c[2] for c in self.calls), max(c[3] for c in self.calls)


@contextlib.contextmanager
def recording_tasks():
    recorder = TaskRecorder()
    # services._announce imports the task from watchlists.tasks when it fires, so this is enough.
    with mock.patch.object(tasks, "refresh_rollups", recorder):
        yield recorder


def setup(tmp: Path, bare: psycopg.Connection) -> Bench:
    if connection.vendor != "postgresql":
        raise RuntimeError("bench_ingest measures PostgreSQL: run it with `make bench BENCH_ARGS=ingest`")
    call_command("migrate", verbosity=0)
    flush_bench_redis()
    # The bench database belongs to the bench: previous runs' series, keys and points go.
    Series.objects.filter(organization__name=ORG_NAME).delete()
    ApiKey.objects.filter(organization__name=ORG_NAME).delete()
    reset_store()
    _, org, raw_key = bootstrap_org(email=BENCH_EMAIL, password="ingest-bench-password", org_name=ORG_NAME)
    t0 = time.perf_counter()
    ticks = load_ticks(N_TICKS)
    csv_path = tmp / "spy_ticks.csv"
    csv_path.write_bytes(ticks.header + b"\n" + ticks.body)
    ensure_partitions(TICK_TABLE, from_us(ticks.ts_us.min()), from_us(ticks.ts_us.max()))
    log(f"loaded {len(ticks):,} ticks {from_us(ticks.ts_us.min())} .. {from_us(ticks.ts_us.max())} "
        f"({time.perf_counter() - t0:.1f}s, not timed)")
    return Bench(system_actor(org.pk), raw_key, ticks, csv_path, bare)


# --- 1. bulk import vs raw COPY -----------------------------------------------------------------

def copy_write_row(bare: psycopg.Connection, rows: list[tuple]) -> int:
    """Baseline (a): the bare library call, psycopg's binary COPY fed row by row."""
    with bare.cursor() as cursor:
        with cursor.copy(COPY_SQL) as copy:
            copy.set_types(COPY_TYPES)
            for row in rows:
                copy.write_row(row)
        return cursor.rowcount


def copy_buffer(bare: psycopg.Connection, buffer: bytes) -> int:
    """Baseline (b): the physical upper bound, one pre-encoded binary COPY stream in one write."""
    with bare.cursor() as cursor:
        with cursor.copy(COPY_SQL) as copy:
            copy.write(buffer)
        return cursor.rowcount


def baseline_inputs(bench: Bench, series_id: int) -> tuple[list[tuple], bytes]:
    """Pre-parsed tuples and the pre-encoded buffer, built untimed. The buffer reuses writer.py's
    private encoder on purpose: the upper bound is then the product's own encoding, by construction."""
    t = bench.ticks
    org = bench.actor.organization_id
    stamps = pd.to_datetime(t.ts_us, unit="us", utc=True).to_pydatetime()
    rows = list(zip(itertools.repeat(org), itertools.repeat(series_id), stamps, t.price.tolist(),
                    t.size.tolist(), itertools.repeat(None)))
    buffer = (_PG_HEADER + binary_copy_rows(_pg_columns(org, series_id, t.points(0, len(t))), null_text_tail=True)
              + _PG_TRAILER)
    return rows, buffer


def _checked(stored: int, expected: int, what: str) -> None:
    if stored != expected:
        raise RuntimeError(f"{what} stored {stored:,} rows, expected {expected:,}")


def _time_copy(bench: Bench, copy_fn, payload) -> float:
    reset_store()
    seconds, stored = timed(copy_fn, bench.bare, payload)
    _checked(stored, len(bench.ticks), copy_fn.__name__)
    return seconds


def _time_import(bench: Bench) -> tuple[float, Series, TaskRecorder]:
    reset_store()
    series = fresh_series(bench.actor, "import")
    with recording_tasks() as recorder:
        seconds, report = timed(import_csv, actor=bench.actor, series=series, path=bench.csv_path)
    _checked(report.stored, len(bench.ticks), "import_csv")
    return seconds, series, recorder


def measure_import(bench: Bench) -> tuple[dict[str, list[float]], Series, TaskRecorder]:
    """Interleaves the three writers per repeat so drifting machine load hits them alike.

    Returns the times and the last imported series (with its recorded refresh tasks), which the
    refresh and read measurements reuse."""
    n = len(bench.ticks)
    rows, buffer = baseline_inputs(bench, fresh_series(bench.actor, "copy").pk)
    times: dict[str, list[float]] = {"write_row": [], "buffer": [], "import_csv": []}
    for i in range(REPEAT):
        times["write_row"].append(_time_copy(bench, copy_write_row, rows))
        times["buffer"].append(_time_copy(bench, copy_buffer, buffer))
        seconds, series, recorder = _time_import(bench)
        times["import_csv"].append(seconds)
        log(f"repeat {i + 1}/{REPEAT}: COPY write_row {rate(n, times['write_row'][-1]):,.0f} rows/s, "
            f"COPY buffer {rate(n, times['buffer'][-1]):,.0f} rows/s, "
            f"import_csv {rate(n, seconds):,.0f} rows/s")
    return times, series, recorder


def import_rows(times: dict[str, list[float]], n: int) -> list[Row]:
    med = {k: statistics.median(v) for k, v in times.items()}
    rates = {k: rate(n, s) for k, s in med.items()}
    fastest = max(("write_row", "buffer"), key=rates.get)
    baseline_names = {"write_row": "raw COPY, psycopg write_row", "buffer": "raw COPY, pre-encoded buffer"}
    imported = rates["import_csv"]
    return [
        Row(f"import_csv {n:,} SPY ticks (parse+validate+COPY)", imported, "rows/s",
            baseline_names[fastest] + " (faster raw)", rates[fastest],
            target=">= 0.5x raw COPY and >= 300k rows/s",
            extra={"seconds_median": med["import_csv"], "seconds_all": times["import_csv"],
                   "raw_copy_write_row_rows_per_s": rates["write_row"],
                   "raw_copy_buffer_rows_per_s": rates["buffer"], "baseline": fastest,
                   "met": imported >= 0.5 * rates[fastest] and imported >= 300_000}),
        Row(f"raw COPY write_row of {n:,} pre-parsed tuples", rates["write_row"], "rows/s",
            baseline_names["buffer"], rates["buffer"], target="(reference: the two raw baselines)",
            extra={"write_row_seconds_all": times["write_row"], "buffer_seconds_all": times["buffer"]}),
    ]


# --- 2. rollup + feature refresh -----------------------------------------------------------------

def fetch_ticks(bare: psycopg.Connection, series_id: int, start_us: int, end_us: int) -> int:
    with bare.cursor() as cursor:
        cursor.execute(TICKS_SQL, [series_id, from_us(start_us), from_us(end_us)])
        return len(cursor.fetchall())


def measure_refresh(bench: Bench, series: Series, recorder: TaskRecorder) -> Row:
    n = len(bench.ticks)
    # The imported range itself: the post-ingest enqueueing (and what it records) may coalesce.
    first, last = int(bench.ticks.ts_us.min()), int(bench.ticks.ts_us.max())
    refresh, fetch = [], []
    for i in range(REPEAT):  # a refresh recomputes its hours in full, so repeating it is idempotent
        refresh.append(timed(refresh_rollups, series, first, last)[0])
        seconds, fetched = timed(fetch_ticks, bench.bare, series.pk, first, last + 1)
        _checked(fetched, n, "bare tick SELECT")
        fetch.append(seconds)
        log(f"repeat {i + 1}/{REPEAT}: refresh_rollups {refresh[-1]:.2f}s, bare tick SELECT {fetch[-1]:.2f}s")
    return Row(f"rollup+feature refresh of {n:,} ticks", statistics.median(refresh), "s",
               "bare psycopg SELECT + fetchall of the ticks it reads", statistics.median(fetch),
               higher_is_better=False,
               target="none in the issue (async task); should keep up with ingest",
               extra={"rows_per_s": rate(n, statistics.median(refresh)), "seconds_all": refresh,
                      "tasks_recorded_during_import": len(recorder.calls)})


# --- HTTP -----------------------------------------------------------------------------------------

class Client:
    """One keep-alive HTTP/1.1 connection carrying the bench's API key."""

    def __init__(self, base: str, api_key: str):
        url = urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=120)
        self.conn.connect()  # outside any timed window
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        try:
            self.conn.request(method, path, body=body, headers=self.headers)
            response = self.conn.getresponse()
            return response.status, response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()  # http.client reconnects on the next request
            raise

    def close(self) -> None:
        self.conn.close()


def get_ok(client: Client, path: str) -> bytes:
    status, body = client.request("GET", path)
    if status != 200:
        raise RuntimeError(f"GET {path}: HTTP {status}: {body[:500]!r}")
    return body


@dataclass
class PostResult:
    seconds: float
    stored: int
    statuses: Counter
    latencies: list[float]


def post_concurrently(base: str, api_key: str, path: str, bodies: list[bytes], clients: int) -> PostResult:
    """`clients` threads, each on its own keep-alive connection, drain one queue of bodies."""
    work: queue.SimpleQueue = queue.SimpleQueue()
    for body in bodies:
        work.put(body)
    statuses: Counter = Counter()
    stored, latencies = [0], []
    lock = threading.Lock()
    connections = [Client(base, api_key) for _ in range(clients)]

    def worker(client: Client) -> None:
        while True:
            try:
                body = work.get_nowait()
            except queue.Empty:
                return
            t0 = time.perf_counter()
            try:
                status, answer = client.request("POST", path, body)
                rows = json.loads(answer)["stored"] if status == 201 else 0
            except (OSError, http.client.HTTPException, ValueError, KeyError) as exc:
                status, rows = type(exc).__name__, 0
            with lock:
                latencies.append(time.perf_counter() - t0)
                statuses[status] += 1
                stored[0] += rows

    threads = [threading.Thread(target=worker, args=(c,)) for c in connections]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    for c in connections:
        c.close()
    return PostResult(seconds, stored[0], statuses, latencies)


# --- 3. REST ingest vs services.ingest -------------------------------------------------------------

def points_path(series: Series, query: dict | None = None) -> str:
    return f"/api/v1/series/{series.pk}/points/" + (f"?{urlencode(query)}" if query else "")


def ingest_batches(actor: Actor, series: Series, batches: list[Points]) -> None:
    for points in batches:
        services.ingest(actor=actor, batches=[(series, points)])


def ingest_in_process(bench: Bench, batches: list[Points]) -> float:
    series = fresh_series(bench.actor, "inproc")
    with recording_tasks():
        return timed(ingest_batches, bench.actor, series, batches)[0]


def measure_rest_ingest(bench: Bench, base: str) -> Row:
    rows = REST_REQUESTS * REST_BATCH_ROWS
    bodies = json_batches(bench.ticks, REST_REQUESTS, REST_BATCH_ROWS)
    batches = [bench.ticks.points(lo, lo + REST_BATCH_ROWS) for lo in range(0, rows, REST_BATCH_ROWS)]
    # Warm the server (imports, DB connection, partition cache, key lookup) outside the timing.
    warm = post_concurrently(base, bench.api_key, points_path(fresh_series(bench.actor, "warm")), bodies[:4], 2)
    if warm.statuses != Counter({201: 4}):
        raise RuntimeError(f"REST warm-up failed: {dict(warm.statuses)}")
    rest, inproc, latencies, errors = [], [], [], Counter()
    for i in range(REPEAT):
        reset_store((TICK_TABLE,))  # rollups stay: nothing here reads them
        result = post_concurrently(base, bench.api_key, points_path(fresh_series(bench.actor, "rest")), bodies,
                                   REST_CLIENTS)
        errors.update({k: v for k, v in result.statuses.items() if k != 201})
        rest.append(rate(result.stored, result.seconds))
        latencies += result.latencies
        reset_store((TICK_TABLE,))
        inproc.append(rate(rows, ingest_in_process(bench, batches)))
        log(f"repeat {i + 1}/{REPEAT}: REST {rest[-1]:,.0f} rows/s ({dict(result.statuses)}), "
            f"services.ingest in-process {inproc[-1]:,.0f} rows/s")
    value = statistics.median(rest)
    return Row(f"REST ingest, {REST_CLIENTS} clients x {REST_BATCH_ROWS:,}-row JSON batches", value, "rows/s",
               f"services.ingest in-process, {REST_BATCH_ROWS:,}-row batches (no HTTP/JSON/validation)",
               statistics.median(inproc), target=">= 20,000 rows/s, every response 201",
               extra={"requests_per_repeat": REST_REQUESTS, "rows_per_repeat": rows, "rows_per_s_all": rest,
                      "baseline_rows_per_s_all": inproc, "non_201": dict(errors),
                      "request_p50_ms": statistics.median(latencies) * 1000,
                      "request_p99_ms": percentile(latencies, 99) * 1000,
                      "met": value >= 20_000 and not errors})


# --- 4. one day of 1-minute bars -------------------------------------------------------------------

def store_read_points():
    """The store read behind GET /points/ (it moved from watchlists.api.points to services)."""
    if hasattr(services, "read_points"):
        return services.read_points
    from watchlists.api import points

    return points.read_points


def bare_bars(bare: psycopg.Connection, series_id: int, start_us: int, end_us: int) -> int:
    with bare.cursor() as cursor:
        cursor.execute(BARS_SQL, [series_id, from_us(start_us), from_us(end_us)])
        return len(cursor.fetchall())


def busiest_day(ticks: Ticks) -> int:
    """The UTC day holding the most ticks (a whole trading day), as µs."""
    days, counts = np.unique(ticks.ts_us // (86_400 * US), return_counts=True)
    return int(days[np.argmax(counts)]) * 86_400 * US


def measure_reads(bench: Bench, base: str, series: Series) -> list[Row]:
    start_us = busiest_day(bench.ticks)
    end_us = start_us + 86_400 * US
    path = points_path(series, {"resolution": "1m", "start": from_us(start_us).isoformat(),
                                "end": from_us(end_us).isoformat()})
    read_points = store_read_points()
    client = Client(base, bench.api_key)
    bars = bare_bars(bench.bare, series.pk, start_us, end_us)
    for _ in range(WARMUP_CALLS):
        _checked(json.loads(get_ok(client, path))["count"], bars, "GET 1m bars")
    times: dict[str, list[float]] = {"http": [], "floor": [], "store": [], "sql": []}
    for _ in range(READ_CALLS):  # interleaved, so load spikes hit all of them alike
        times["http"].append(timed(get_ok, client, path)[0])
        # The server's floor: a round trip through the web server and the middleware, no auth, no query.
        times["floor"].append(timed(get_ok, client, "/healthz")[0])
        times["store"].append(timed(read_points, series, "1m", start_us, end_us, 10_000)[0])
        times["sql"].append(timed(bare_bars, bench.bare, series.pk, start_us, end_us)[0])
    client.close()
    ms = {k: [s * 1000 for s in v] for k, v in times.items()}
    p50 = {k: statistics.median(v) for k, v in ms.items()}
    log(f"1 day = {bars} bars: HTTP p50 {p50['http']:.1f} ms, read_points p50 {p50['store']:.1f} ms, "
        f"bare SQL p50 {p50['sql']:.1f} ms")
    baseline = "bare SQL through psycopg (p50)"
    common = {"bars": bars, "calls": READ_CALLS, "day": from_us(start_us).date().isoformat()}
    return [
        Row("GET 1 day of 1m bars over HTTP (p50)", p50["http"], "ms", baseline, p50["sql"],
            higher_is_better=False, target="< 20 ms",
            extra={**common, "p99_ms": percentile(ms["http"], 99), "healthz_p50_ms": p50["floor"],
                   "met": p50["http"] < 20}),
        Row("read_points 1 day of 1m bars (p50)", p50["store"], "ms", baseline, p50["sql"],
            higher_is_better=False, target="< 20 ms",
            extra={**common, "p99_ms": percentile(ms["store"], 99), "sql_p99_ms": percentile(ms["sql"], 99),
                   "met": p50["store"] < 20}),
    ]


# --- export over HTTP vs raw COPY TO ---------------------------------------------------------------

EXPORT_REPEAT = 3


def bare_export(bare: psycopg.Connection, organization_id: int) -> int:
    """The floor: the same rows, in the same order, as CSV from PostgreSQL's COPY TO; returns bytes."""
    size = 0
    with bare.cursor() as cursor, cursor.copy(
            f"COPY (SELECT series_id, ts, price, size, trade_id FROM {TICK_TABLE} WHERE organization_id = %s "
            "ORDER BY series_id, ts) TO STDOUT (FORMAT csv)", [organization_id]) as copy:
        for chunk in copy:
            size += len(chunk)
    return size


def measure_export(bench: Bench, base: str) -> list[Row]:
    """GET /api/v1/export/ of every stored tick, as CSV and as JSON, through the web server, interleaved with
    the raw COPY TO baseline; each export's rows are counted."""
    stored = fetch_count(bench.bare, bench.actor.organization_id)
    client = Client(base, bench.api_key)
    times: dict[str, list[float]] = {"csv": [], "json": [], "copy": []}
    for i in range(EXPORT_REPEAT):
        for fmt in ("csv", "json"):
            seconds, body = timed(get_ok, client, f"/api/v1/export/?dataset=points&file_format={fmt}")
            rows = body.count(b"\n") - 1 if fmt == "csv" else len(json.loads(body))
            _checked(rows, stored, f"export {fmt}")
            times[fmt].append(seconds)
        times["copy"].append(timed(bare_export, bench.bare, bench.actor.organization_id)[0])
        log(f"export repeat {i + 1}/{EXPORT_REPEAT}: CSV {rate(stored, times['csv'][-1]):,.0f} rows/s, "
            f"JSON {rate(stored, times['json'][-1]):,.0f} rows/s, raw COPY TO {rate(stored, times['copy'][-1]):,.0f}")
    client.close()
    rates = {k: rate(stored, statistics.median(v)) for k, v in times.items()}
    baseline = "raw COPY (SELECT ...) TO STDOUT, CSV (median)"
    return [Row(f"export points as {fmt.upper()} over HTTP (median)", rates[fmt], "rows/s", baseline, rates["copy"],
                extra={"rows": stored, "repeat": EXPORT_REPEAT, "seconds": times[fmt]})
            for fmt in ("csv", "json")]


def fetch_count(bare: psycopg.Connection, organization_id: int) -> int:
    return bare.execute(f"SELECT count(*) FROM {TICK_TABLE} WHERE organization_id = %s",
                        [organization_id]).fetchone()[0]


# --- entry point -----------------------------------------------------------------------------------

def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        with bare_connection() as bare:
            bench = setup(Path(tmp), bare)
            times, series, recorder = measure_import(bench)
            rows = import_rows(times, len(bench.ticks))
            rows.append(measure_refresh(bench, series, recorder))
            try:
                with live_server() as base:
                    log(f"web server up at {base}")
                    rows += measure_reads(bench, base, series)
                    rows += measure_export(bench, base)
                    rows.append(measure_rest_ingest(bench, base))
            finally:
                flush_bench_redis()  # the server queued refresh tasks that no worker will run
    return rows
