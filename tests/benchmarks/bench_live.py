"""Live-pipeline benchmark (issue 6): REST ingest -> Celery detection -> WebSocket anomaly events.

Everything real and on this machine: PostgreSQL, Redis (broker db 10, cache 11, channel layer
12), ONE Celery worker (`-Q detect,ingest`, prefork pool of 2 processes as the Procfile's realtime runs
it, prefetch 1) and ONE web process (gunicorn + one uvicorn worker, the Procfile's web) serving both the
REST API and /ws/v1/live/.

Load: 2,000 ticks/s for BENCH_LIVE_SECONDS (default 60) across 50 trade series, each with one
enabled rule `price > 200`. Every PERIOD (50 ms) one POST /api/v1/ingest/ carries 100 ticks:
SERIES_PER_POST series (round-robin groups) x TICKS_PER_POST / SERIES_PER_POST ticks. Tick
timestamps encode their POST: POST r holds ts in [base + r*50, base + r*50 + 50) ms. Normal prices
sit near 100; every ANOMALY_EVERY_POSTS-th POST carries one tick at 500 in one of its series (so
each series fires every ~5 s, 10 anomalies/s in all), and only those fire.

Clients (tests/benchmarks/live_clients.py), in two processes so neither's work delays the other's
timestamps: 20 WebSocket subscribers (subscriber i follows the 10 series j with j % 5 == i % 5, so
every series has 4 subscribers) plus the raw Redis PUBLISH -> SUBSCRIBE baseline on db 12 in the
same event loop; and the poster (a pacer and 4 keep-alive connections) stamping each POST's send.

Figures: latency from the send of the POST carrying the anomalous tick to the arrival of its
anomaly event, per (subscriber, anomaly) delivery; every delivery expected from the anomalies
stored is counted (zero lost); the tick-event latency (POST sent -> point event) as a secondary
row; a breakdown (POST answered, anomaly row created, queue depths, CPU of each process) to show
where the time goes.

Knobs (environment): BENCH_LIVE_SECONDS, BENCH_LIVE_POOL (prefork | threads | solo), BENCH_LIVE_CONCURRENCY,
BENCH_LIVE_SERIES_PER_POST (10; 50 = every series in every POST), BENCH_LIVE_TICKS_PER_POST (100; the
POST period follows, for 2,000 ticks/s), BENCH_LIVE_QUEUES.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management import call_command
from django.db import connection

from accounts.models import ApiKey
from accounts.services import bootstrap_org
from accounts.tenancy import system_actor
from detection.models import Anomaly, Rule
from watchlists import services
from watchlists.models import Series

from .harness import REPO, Row, percentile
from .server import live_server

SECONDS = float(os.environ.get("BENCH_LIVE_SECONDS", "60"))
POOL = os.environ.get("BENCH_LIVE_POOL", "prefork")
# Two pool processes: a rollup refresh (seconds, on the ingest queue) must not hold up detection.
CONCURRENCY = int(os.environ.get("BENCH_LIVE_CONCURRENCY", "2"))
QUEUES = os.environ.get("BENCH_LIVE_QUEUES", "detect,ingest")
N_SERIES = 50
TICKS_PER_S = 2000
TICKS_PER_POST = int(os.environ.get("BENCH_LIVE_TICKS_PER_POST", "100"))  # one POST of 100 ticks ...
PERIOD = TICKS_PER_POST / TICKS_PER_S  # ... every 50 ms: 2,000 ticks/s
SERIES_PER_POST = int(os.environ.get("BENCH_LIVE_SERIES_PER_POST", "10"))
if TICKS_PER_POST < SERIES_PER_POST or TICKS_PER_POST % SERIES_PER_POST:
    raise SystemExit(f"BENCH_LIVE_TICKS_PER_POST={TICKS_PER_POST} must be a multiple of "
                     f"BENCH_LIVE_SERIES_PER_POST={SERIES_PER_POST} (the ticks are split evenly between the series)")
ANOMALY_EVERY_POSTS = max(1, round(0.1 / PERIOD))  # 10 anomalies/s; each series every 5 s
NORMAL_PRICE, ANOMALY_PRICE, THRESHOLD = 100.0, 500.0, 200
SUBSCRIBERS = 20
SUBSCRIBER_GROUPS = 5  # subscriber i follows series j with j % 5 == i % 5: 10 series, 4 subscribers each
POST_CONNECTIONS = 4
POST_GRACE_SECONDS = 5  # POSTs not sent this long after the last was due are abandoned (counted)
DRAIN_SECONDS = 20  # after the last POST, how long anomalies may still arrive
START_DELAY = 1.0
TARGET_P50_MS, TARGET_P99_MS = 20.0, 50.0

ORG_NAME = "Live bench"
BENCH_EMAIL = "live-bench@anomalyhub.local"
SYMBOL = "LIVE{:02d}"
REDIS_BENCH_DB = 10
STORE_TABLES = ("watchlists_tick", "watchlists_rollup", "watchlists_feature")


def log(message: str) -> None:
    print(f"  [live] {message}", flush=True)


# --- Redis and database ---------------------------------------------------------------------

def redis_db_url(offset: int) -> str:
    parts = urlsplit(settings.REDIS_URL)
    return parts._replace(path=f"/{int(parts.path.strip('/') or 0) + offset}").geturl()


def flush_bench_redis() -> None:
    import redis

    base = int(urlsplit(settings.REDIS_URL).path.strip("/") or 0)
    if base != REDIS_BENCH_DB:
        log(f"REDIS_URL db is {base}, not the bench's {REDIS_BENCH_DB}: not flushing it")
        return
    for offset in range(3):
        redis.Redis.from_url(redis_db_url(offset)).flushdb()


def clean_previous_runs() -> None:
    """The bench database belongs to the bench: previous runs' series, points, rules and keys go."""
    old = list(Series.objects.filter(organization__name=ORG_NAME).values_list("pk", flat=True))
    if old:
        with connection.cursor() as cursor:
            for table in STORE_TABLES:
                cursor.execute(f"DELETE FROM {table} WHERE series_id = ANY(%s)", [old])
    Series.objects.filter(pk__in=old).delete()  # cascades rules, anomalies, cursors, states
    ApiKey.objects.filter(organization__name=ORG_NAME).delete()


def setup() -> tuple[int, str, list[Series]]:
    if connection.vendor != "postgresql" or not settings.REDIS_URL:
        raise RuntimeError("bench_live needs PostgreSQL and Redis: run `make bench BENCH_ARGS=live`")
    call_command("migrate", verbosity=0)
    flush_bench_redis()
    clean_previous_runs()
    _, org, raw_key = bootstrap_org(email=BENCH_EMAIL, password="live-bench-password", org_name=ORG_NAME)
    actor = system_actor(org.pk)
    series = []
    for i in range(N_SERIES):
        s = services.create_series(actor=actor, symbol=SYMBOL.format(i), kind="trade", exchange="")
        Rule.objects.create(organization=org, name=f"spike {i}", metrics=f"price > {THRESHOLD}", series=s,
                            enabled=True)
        series.append(s)
    return org.pk, raw_key, series


# --- the schedule -------------------------------------------------------------------------------

def build_schedule(series: list[Series], base_ms: int, posts: int) -> tuple[list[str], list[tuple[int, int, int]]]:
    """(JSON bodies, anomalies planted as (post, series id, ts ms)). POST r holds timestamps in
    [base + r*PERIOD, base + (r+1)*PERIOD) (50 ms by default), so a timestamp names its POST."""
    rng = random.Random(6)
    groups = [series[g:g + SERIES_PER_POST] for g in range(0, len(series), SERIES_PER_POST)]
    per_series = TICKS_PER_POST // SERIES_PER_POST
    step_ms = int(PERIOD * 1000) // per_series
    planted, bodies, turns = [], [], [0] * len(groups)
    for r in range(posts):
        g = r % len(groups)
        members = groups[g]
        spike = None
        if r % ANOMALY_EVERY_POSTS == 0:
            spike = members[turns[g] % len(members)]
            turns[g] += 1
        t0 = base_ms + r * int(PERIOD * 1000)
        points = {}
        for s in members:
            rows = [{"ts": t0 + k * step_ms, "price": round(NORMAL_PRICE + rng.uniform(-5, 5), 2),
                     "size": rng.randrange(1, 10) * 100} for k in range(per_series)]
            if s is spike:
                k = rng.randrange(per_series)
                rows[k]["price"] = ANOMALY_PRICE
                planted.append((r, s.pk, rows[k]["ts"]))
            points[s.symbol] = rows
        bodies.append(json.dumps({"points": points}))
    return bodies, planted


def subscriptions(series: list[Series]) -> list[list[int]]:
    return [[s.pk for j, s in enumerate(series) if j % SUBSCRIBER_GROUPS == i % SUBSCRIBER_GROUPS]
            for i in range(SUBSCRIBERS)]


# --- processes ------------------------------------------------------------------------------------

class Worker:
    """One Celery worker subprocess, stopped by its PID (and its process group: prefork children)."""

    def __init__(self, env: dict, log_path: Path):
        pool = {"solo": ["--pool=solo"], "prefork": ["--pool=prefork", "-c", str(CONCURRENCY)],
                "threads": ["--pool=threads", "-c", str(CONCURRENCY)]}[POOL]
        self.out = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "anomalyhub", "worker", "-Q", QUEUES, *pool, "-O", "fair",
             "--prefetch-multiplier", "1", "--without-heartbeat", "--without-gossip", "--without-mingle",
             "-l", "info"],
            env=env, cwd=REPO, stdout=self.out, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.out.close()


def web_pid() -> int | None:
    """The web server live_server() started (it yields only the URL): gunicorn, a child of this process;
    cpu_seconds counts its uvicorn worker with it."""
    me = os.getpid()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except OSError:
            continue
        ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), 0)
        if ppid == me and any(b"gunicorn" in arg for arg in cmd):
            return int(proc.name)
    return None


def cpu_seconds(pid: int | None, children: bool = True) -> float:
    """User+system CPU of a process (and of its live children), from /proc."""
    if not pid:
        return 0.0
    total = 0.0
    pids = [pid]
    if children:
        with contextlib.suppress(OSError):
            pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for p in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


class Sampler(threading.Thread):
    """Every 0.25 s during the load: the broker's queue depths (db 10)."""

    def __init__(self):
        super().__init__(daemon=True)
        import redis

        self.redis = redis.Redis.from_url(redis_db_url(0))
        self.samples: list[tuple[float, int, int]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(0.25):
            with contextlib.suppress(Exception):
                pipe = self.redis.pipeline()
                pipe.llen("detect")
                pipe.llen("ingest")
                detect, ingest = pipe.execute()
                self.samples.append((time.monotonic(), detect, ingest))


def run_client(mode: str, cfg: dict, tmp: Path) -> tuple[subprocess.Popen, Path, Path]:
    config, out, err = tmp / f"{mode}.json", tmp / f"{mode}.out.json", tmp / f"{mode}.log"
    config.write_text(json.dumps(cfg))
    with open(err, "wb") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "tests.benchmarks.live_clients", mode, str(config), str(out)],
                                cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    return proc, out, err


def wait_ready(proc: subprocess.Popen, err: Path, timeout: float = 90) -> None:
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if not result or result[0].strip() != "READY":
        raise RuntimeError(f"subscribers not ready: {result!r}\n{err.read_text(errors='replace')[-3000:]}")


def finish(proc: subprocess.Popen, out: Path, err: Path, timeout: float) -> dict:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise RuntimeError(f"client process did not finish in {timeout:.0f}s") from None
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"client process failed ({proc.returncode}):\n{err.read_text(errors='replace')[-3000:]}")
    return json.loads(out.read_text())


# --- warm-up ---------------------------------------------------------------------------------------

def warm_up(base_url: str, api_key: str, series: list[Series], base_ms: int) -> None:
    """Warms the web server, the worker and every rule's state on ticks before the measured timeline;
    one anomaly per series proves the whole path works before anything is timed."""
    import http.client

    url = urlsplit(base_url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
    start_ms = base_ms - 10_000
    for k in range(3):
        points = {s.symbol: [{"ts": start_ms + k * 1000 + j, "price": ANOMALY_PRICE if k == 1 else NORMAL_PRICE,
                              "size": 100} for j in range(2)] for s in series}
        conn.request("POST", "/api/v1/ingest/", body=json.dumps({"points": points}), headers=headers)
        response = conn.getresponse()
        body = response.read()
        if response.status != 201:
            raise RuntimeError(f"warm-up POST: HTTP {response.status}: {body[:500]!r}")
    conn.close()
    ids = [s.pk for s in series]
    deadline = time.monotonic() + 90
    # Published, not only stored: a late warm-up event would reach the measured subscribers.
    while Anomaly.objects.filter(series_id__in=ids, published_at__isnull=False).count() < len(series) * 2:
        if time.monotonic() > deadline:
            raise RuntimeError("warm-up: the worker did not detect the warm-up anomalies within 90 s "
                               f"({Anomaly.objects.filter(series_id__in=ids).count()} of {len(series) * 2})")
        time.sleep(0.2)


# --- analysis --------------------------------------------------------------------------------------

def ms_stats(values_s: list[float]) -> dict:
    ms = [v * 1000 for v in values_s]
    if not ms:
        return {"n": 0}
    return {"n": len(ms), "p50": statistics.median(ms), "p95": percentile(ms, 95), "p99": percentile(ms, 99),
            "max": max(ms), "min": min(ms)}


def fmt(stats: dict) -> str:
    if not stats.get("n"):
        return "n=0"
    return (f"p50 {stats['p50']:.1f} / p95 {stats['p95']:.1f} / p99 {stats['p99']:.1f} / max {stats['max']:.1f} ms "
            f"(n={stats['n']:,})")


def analyse(planted, posted, subs, stored, base_ms, wall_offset, samples, cpu, elapsed) -> dict:
    """Matches every stored anomaly to its POST and every subscriber's copy of it."""
    period_ms = int(PERIOD * 1000)
    sent, answered, statuses = posted["sent"], posted["answered"], posted["statuses"]

    def post_of(ts_ms: int) -> int:
        return (ts_ms - base_ms) // period_ms

    planted_keys = {(s, ts) for _, s, ts in planted}
    stored_keys = {(s, ts) for s, ts, _, _ in stored}
    followers: dict[int, list[int]] = {}
    for sub in subs:
        for s in sub["series"]:
            followers.setdefault(s, []).append(sub["index"])
    expected = {(i, s, ts) for s, ts, _, _ in stored for i in followers.get(s, [])}
    received: dict[tuple, list[float]] = {}
    for sub in subs:
        for s, ts, _, arrival in sub["anomalies"]:
            received.setdefault((sub["index"], s, ts), []).append(arrival)
    latencies, duplicates = [], 0
    for key in expected:
        arrivals = received.get(key)
        if arrivals:
            duplicates += len(arrivals) - 1
            r = post_of(key[2])
            if 0 <= r < len(sent) and sent[r]:
                latencies.append(min(arrivals) - sent[r])
    unexpected = [k for k in received if k not in expected]
    lost = sorted(expected - set(received))

    # Breakdown per stored anomaly: send -> POST answered -> anomaly row created -> first arrival.
    first_arrival = {}
    for (_, s, ts), arrivals in received.items():
        first_arrival[(s, ts)] = min(first_arrival.get((s, ts), arrivals[0]), *arrivals)
    to_answer, to_created, created_to_arrival = [], [], []
    for s, ts, _, created_wall in stored:
        r = post_of(ts)
        if not (0 <= r < len(sent) and sent[r]):
            continue
        created = created_wall - wall_offset
        to_answer.append(answered[r] - sent[r])
        to_created.append(created - sent[r])
        if (s, ts) in first_arrival:
            created_to_arrival.append(first_arrival[(s, ts)] - created)

    tick_latencies = []
    for sub in subs:
        for _, first_ts, arrival in sub["ticks"]:
            r = post_of(first_ts)
            if 0 <= r < len(sent) and sent[r]:
                tick_latencies.append(arrival - sent[r])
    ok = sum(1 for st in statuses if st == 201)
    return {
        "anomaly_latency": ms_stats(latencies),
        "tick_latency": ms_stats(tick_latencies),
        "post_request": ms_stats([a - s for s, a in zip(sent, answered, strict=True) if s and a]),
        "breakdown": {"post_sent_to_answered": ms_stats(to_answer),
                      "post_sent_to_anomaly_created": ms_stats(to_created),
                      "anomaly_created_to_first_arrival": ms_stats(created_to_arrival)},
        "planted": len(planted), "stored": len(stored),
        "planted_not_stored": len(planted_keys - stored_keys), "stored_not_planted": len(stored_keys - planted_keys),
        "expected_deliveries": len(expected), "delivered": len(expected) - len(lost), "lost": len(lost),
        "lost_sample": lost[:10], "duplicates": duplicates, "unexpected": len(unexpected),
        "unexpected_sample": sorted(unexpected)[:10],
        "seq_gaps": sum(sub["gaps"] for sub in subs),
        "subscriber_errors": [e for sub in subs for e in sub["errors"]][:5],
        "subscriber_closed": [sub["closed"] for sub in subs if sub["closed"]][:5],
        "posts": len(statuses), "posts_201": ok, "non_201": {str(k): statuses.count(k) for k in set(statuses) if k != 201},
        "late_dispatches": posted["late_dispatches"],
        "ticks_per_s": ok * TICKS_PER_POST / elapsed if elapsed else 0.0,
        "queue_depth": {"detect_max": max((d for _, d, _ in samples), default=0),
                        "detect_median": statistics.median([d for _, d, _ in samples]) if samples else 0,
                        "ingest_max": max((i for _, _, i in samples), default=0),
                        "ingest_last": samples[-1][2] if samples else 0},
        "cpu_seconds": cpu, "load_seconds": elapsed,
    }


# --- entry point -------------------------------------------------------------------------------------

def measure(tmp: Path) -> dict:
    org_id, api_key, series = setup()
    posts = int(SECONDS / PERIOD)
    base_ms = (int(time.time() * 1000) // 1000 + 5) * 1000  # after the warm-up's timestamps
    bodies, planted = build_schedule(series, base_ms, posts)
    subs_plan = subscriptions(series)
    followers = {s: sum(s in plan for plan in subs_plan) for s in (x.pk for x in series)}
    expected_deliveries = sum(followers[s] for _, s, _ in planted)
    log(f"{N_SERIES} series, {SUBSCRIBERS} subscribers, {posts} POSTs of {TICKS_PER_POST} ticks "
        f"({SERIES_PER_POST} series each) over {SECONDS:.0f}s, {len(planted)} anomalies planted, "
        f"{expected_deliveries} deliveries expected; worker pool {POOL}, queues {QUEUES}")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "anomalyhub.settings", "CELERY_TASK_ALWAYS_EAGER": "false",
           "LOG_LEVEL": "WARNING"}
    worker = Worker(env, tmp / "worker.log")
    procs: list[subprocess.Popen] = []
    try:
        with live_server(env) as base_url:
            port = urlsplit(base_url).port
            pid = web_pid()
            warm_up(base_url, api_key, series, base_ms)
            log(f"web {base_url} (pid {pid}), worker pid {worker.proc.pid}: warmed up")
            common = {"api_key": api_key}
            sub_cfg = {**common, "ws_url": base_url.replace("http://", "ws://") + "/ws/v1/live/",
                       "subscriptions": subs_plan, "subscribers": SUBSCRIBERS,
                       "expected_deliveries": expected_deliveries, "redis_url": redis_db_url(2),
                       "baseline_period": 0.05, "grace_seconds": 1.0,
                       "deadline": time.monotonic() + 120 + SECONDS + DRAIN_SECONDS}  # a last resort
            sub_proc, sub_out, sub_err = run_client("subscribe", sub_cfg, tmp)
            procs.append(sub_proc)
            wait_ready(sub_proc, sub_err)
            start = time.monotonic() + START_DELAY
            post_cfg = {**common, "bodies": bodies, "period": PERIOD, "start": start, "host": "127.0.0.1",
                        "port": port, "path": "/api/v1/ingest/", "connections": POST_CONNECTIONS,
                        "grace_seconds": POST_GRACE_SECONDS}
            post_proc, post_out, post_err = run_client("post", post_cfg, tmp)
            procs.append(post_proc)
            sampler = Sampler()
            sampler.start()
            cpu0 = {"web": cpu_seconds(pid), "worker": cpu_seconds(worker.proc.pid),
                    "subscribers": cpu_seconds(sub_proc.pid)}
            posted = finish(post_proc, post_out, post_err, timeout=SECONDS + 60)
            elapsed = max([a for a in posted["answered"] if a] or [start + SECONDS]) - start
            cpu_load = {"web": cpu_seconds(pid), "worker": cpu_seconds(worker.proc.pid),
                        "subscribers": cpu_seconds(sub_proc.pid)}
            log(f"load done: {sum(s == 201 for s in posted['statuses'])}/{len(posted['statuses'])} POSTs 201 "
                f"in {elapsed:.1f}s; draining")
            # The subscribers stop as soon as every expected delivery arrived, else when told to.
            with contextlib.suppress(subprocess.TimeoutExpired):
                sub_proc.wait(timeout=DRAIN_SECONDS)
            if sub_proc.poll() is None:
                log(f"not every delivery arrived {DRAIN_SECONDS}s after the load: stopping the subscribers")
                with contextlib.suppress(OSError):
                    sub_proc.stdin.write("STOP\n")
                    sub_proc.stdin.flush()
            received = finish(sub_proc, sub_out, sub_err, timeout=20)
            sampler.halt.set()
            sampler.join(5)
            cpu_after = {"web": cpu_seconds(pid), "worker": cpu_seconds(worker.proc.pid)}
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
        worker.stop()
    ids = [s.pk for s in series]
    base_dt = time.time()  # wall <-> monotonic offset for the created_at stamps
    wall_offset = base_dt - time.monotonic()
    stored = [(s, round(ts.timestamp() * 1000), pk, created.timestamp()) for s, ts, pk, created in
              Anomaly.objects.filter(series_id__in=ids, ts__gte=_ms_dt(base_ms))
              .values_list("series_id", "ts", "pk", "created_at")]
    cpu = {k: round(cpu_load[k] - cpu0[k], 2) for k in cpu0}
    cpu["web_drain"] = round(cpu_after["web"] - cpu_load["web"], 2)
    cpu["worker_drain"] = round(cpu_after["worker"] - cpu_load["worker"], 2)
    result = analyse(planted, posted, received["subscribers"], stored, base_ms, wall_offset, sampler.samples,
                     cpu, elapsed)
    result["redis_baseline"] = ms_stats(received["redis_baseline_s"])
    worker_log = (tmp / "worker.log").read_text(errors="replace")
    result["task_seconds"] = task_seconds(worker_log)
    result["worker_log_tail"] = "\n".join(line for line in worker_log.splitlines()
                                          if "succeeded in" not in line)[-1500:]
    return result


def task_seconds(worker_log: str) -> dict:
    """Median / p95 / max run time and count per task name, from the worker's INFO lines
    ("Task detection.run_pending[...] succeeded in 0.05s: 0")."""
    runs: dict[str, list[float]] = {}
    for match in re.finditer(r"Task ([\w.]+)\[[^\]]+\] succeeded in ([\d.]+)s", worker_log):
        runs.setdefault(match.group(1), []).append(float(match.group(2)) * 1000)
    return {name: {"n": len(ms), "p50_ms": round(statistics.median(ms), 1), "p95_ms": round(percentile(ms, 95), 1),
                   "max_ms": round(max(ms), 1)} for name, ms in runs.items()}


def _ms_dt(ms: int):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def rows_of(r: dict) -> list[Row]:
    a, t, b = r["anomaly_latency"], r["tick_latency"], r["redis_baseline"]
    met_p50 = a.get("n", 0) > 0 and a["p50"] <= TARGET_P50_MS
    met_p99 = a.get("n", 0) > 0 and a["p99"] <= TARGET_P99_MS
    lost_ok = r["lost"] == 0 and r["expected_deliveries"] > 0 and r["planted_not_stored"] == 0
    setup_text = (f"{N_SERIES} series x 1 rule, {SUBSCRIBERS} WS subscribers, {r['ticks_per_s']:,.0f} ticks/s "
                  f"for {r['load_seconds']:.0f}s, 1 worker ({POOL})")
    common = {"setup": setup_text, "breakdown": r["breakdown"], "queue_depth": r["queue_depth"],
              "task_seconds": r.get("task_seconds"),
              "cpu_seconds": r["cpu_seconds"], "pool": POOL, "queues": QUEUES, "series_per_post": SERIES_PER_POST,
              "ticks_per_post": TICKS_PER_POST}
    return [
        Row("anomaly latency p50, POST sent -> WS anomaly", a.get("p50", float("nan")), "ms",
            "raw Redis PUBLISH->SUBSCRIBE p50 (same run)", b.get("p50"), higher_is_better=False,
            target=f"<= {TARGET_P50_MS:.0f} ms",
            extra={**common, "latency": a, "redis_baseline": b, "met": met_p50}),
        Row("anomaly latency p99, POST sent -> WS anomaly", a.get("p99", float("nan")), "ms",
            "raw Redis PUBLISH->SUBSCRIBE p99 (same run)", b.get("p99"), higher_is_better=False,
            target=f"<= {TARGET_P99_MS:.0f} ms", extra={"latency": a, "redis_baseline": b, "met": met_p99}),
        Row("anomaly deliveries lost (of expected)", r["lost"], "count", "deliveries expected",
            r["expected_deliveries"], higher_is_better=False, target="0 lost",
            extra={k: r[k] for k in ("planted", "stored", "planted_not_stored", "stored_not_planted", "delivered",
                                     "lost_sample", "duplicates", "unexpected", "unexpected_sample", "seq_gaps",
                                     "subscriber_errors",
                                     "subscriber_closed")} | {"met": lost_ok}),
        Row("tick event latency p50, POST sent -> WS tick", t.get("p50", float("nan")), "ms",
            "raw Redis PUBLISH->SUBSCRIBE p50 (same run)", b.get("p50"), higher_is_better=False,
            target="(secondary)", extra={"latency": t}),
        Row("REST ingest rate sustained (2,000 ticks/s offered)", r["ticks_per_s"], "ticks/s",
            "offered rate", TICKS_PER_S, target=">= 2,000 ticks/s, every POST 201",
            extra={"posts": r["posts"], "posts_201": r["posts_201"], "non_201": r["non_201"],
                   "late_dispatches": r["late_dispatches"], "post_request": r["post_request"],
                   "met": r["posts_201"] == r["posts"] and r["ticks_per_s"] >= 0.98 * TICKS_PER_S}),
    ]


def report(r: dict) -> None:
    log(f"anomaly latency  {fmt(r['anomaly_latency'])}")
    log(f"tick latency     {fmt(r['tick_latency'])}")
    log(f"redis baseline   {fmt(r['redis_baseline'])}")
    log(f"POST request     {fmt(r['post_request'])}")
    for k, v in r["breakdown"].items():
        log(f"  {k:<34} {fmt(v)}")
    log(f"anomalies planted {r['planted']}, stored {r['stored']} (planted not stored {r['planted_not_stored']}, "
        f"unplanted {r['stored_not_planted']}); deliveries {r['delivered']}/{r['expected_deliveries']}, "
        f"lost {r['lost']}, duplicates {r['duplicates']}, unexpected {r['unexpected']}, seq gaps {r['seq_gaps']}")
    log(f"POSTs {r['posts_201']}/{r['posts']} 201 {r['non_201'] or ''}, late dispatches {r['late_dispatches']}, "
        f"{r['ticks_per_s']:,.0f} ticks/s; queues {r['queue_depth']}; CPU s {r['cpu_seconds']}")
    log(f"worker task run times: {r.get('task_seconds')}")
    if r["subscriber_closed"] or r["subscriber_errors"]:
        log(f"subscriber trouble: {r['subscriber_closed']} {r['subscriber_errors']}")


def run() -> list[Row]:
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        try:
            result = measure(Path(tmp))
        finally:
            flush_bench_redis()
    report(result)
    return rows_of(result)
