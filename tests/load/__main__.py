"""`make load`: the production process model under load, measured, written to docs/load-report.md.

1. Migrates the load database ($DATABASE_URL, its own) and creates the tenants (tests/load/prepare.py).
2. Starts the Procfile under honcho as `make run` does, web on a free 127.0.0.1 port (gunicorn's
   production default of WEB_PROCESSES, or LOAD_WEB_PROCESSES; one worker process per queue group,
   beat), ingests some history through the API and waits for the workers to drain.
3. Runs locust headless for LOAD_SECONDS (default 60) with the users of tests/load/locustfile.py,
   while sampling the CPU time of every process.
4. Stops the processes (SIGTERM to honcho, checked clean) and writes the report: throughput, p50/p99 and errors
   per endpoint, the target verdict, and where the CPU went.

The report is the whole file, from this run alone: nothing is appended or kept from earlier runs
(tests/test_docs.py checks that the committed one has exactly the sections written here).
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import redis

from tests.benchmarks.harness import REPO, percentile
from tests.benchmarks.server import free_port

SECONDS = int(os.environ.get("LOAD_SECONDS", "60"))
WEB_PROCESSES = os.environ.get("LOAD_WEB_PROCESSES", "")  # empty: gunicorn_conf's default, as deployed
# Worker processes per Procfile worker (REALTIME_CONCURRENCY and so on override them).
WORKERS = {"REALTIME_CONCURRENCY": "1", "TRAIN_CONCURRENCY": "1", "ALERTS_CONCURRENCY": "1"}
HONCHO_STOPPED_ON_SIGTERM = 143  # honcho's status once it stopped every process on SIGTERM
API_RPS = float(os.environ.get("LOAD_API_RPS", "300"))
TICKS_PER_S = float(os.environ.get("LOAD_TICKS_PER_S", "1000"))
REPORT = Path(os.environ.get("LOAD_REPORT", REPO / "docs" / "load-report.md"))
TARGET_P99_MS = 100
HISTORY_POSTS = 5  # per organization, 1,000 ticks each, before the measured run
CLK = os.sysconf("SC_CLK_TCK")
GENERATED = ("Written whole by `make load` from its latest run (tests/load/__main__.py); do not edit or append: "
             "run `make load` again. How the system grows: docs/scaling.md.")
HEADINGS = ["# Load report (`make load`)", "## Result", "## Where the CPU went (cores busy during the window)"]


def _env() -> dict:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "anomalyhub.settings", "DJANGO_ENV": "production",
            "SECRET_KEY": os.environ.get("SECRET_KEY", "load-test-secret-key-not-for-production-0123456789"),
            "ALLOWED_HOSTS": "127.0.0.1,localhost", "SECURE_SSL_REDIRECT": "false", "LOG_LEVEL": "WARNING",
            "CELERY_TASK_ALWAYS_EAGER": "false"}


def _ensure_database(url: str) -> None:
    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    admin = parts._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _analyze(url: str) -> str:
    """Statistics as a production database has them. This machine's PostgreSQL runs with
    autovacuum off, so the tick partitions the history and earlier runs filled were never analysed:
    the planner then read a whole day of a series' ticks to sort out a 200-row page (51 ms instead
    of 0.5 ms, measured) and PostgreSQL became the bottleneck. Returns autovacuum's setting."""
    with psycopg.connect(url, autocommit=True) as conn:
        autovacuum = conn.execute("SHOW autovacuum").fetchone()[0]
        conn.execute("ANALYZE")
    return autovacuum


def _redis_dbs(url: str) -> list[redis.Redis]:
    base = int(urlsplit(url).path.strip("/") or 0)
    return [redis.Redis.from_url(url.rsplit("/", 1)[0] + f"/{base + i}") for i in range(3)]


def _request(port, method, path, body=None, headers=None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _wait_ready(port: int, server: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError("the server exited during start-up")
        try:
            if _request(port, "GET", "/readyz")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("the server did not become ready")


def _history(port: int, config: dict) -> None:
    """1,000-tick batches over the last minutes, so reads (raw and 1-minute bars) have data."""
    now_ms = int(time.time() * 1000)
    for tenant in config["tenants"]:
        headers = {"Authorization": f"Bearer {tenant['ingest_key']}", "Content-Type": "application/json"}
        for p in range(HISTORY_POSTS):
            t0 = now_ms - (HISTORY_POSTS - p) * 60_000
            points = {s["symbol"]: [{"ts": t0 + k * 300, "price": 100.0 + (k % 7) / 10, "size": 100}
                                    for k in range(200)] for s in tenant["series"]}
            status, body = _request(port, "POST", "/api/v1/ingest/", json.dumps({"points": points}), headers)
            if status != 201:
                raise RuntimeError(f"history ingest: HTTP {status} {body[:300]!r}")


def _queue_depths(broker: redis.Redis) -> dict[str, int]:
    return {q: broker.llen(q) for q in ("ingest", "detect", "train", "alerts")}


def _drain(broker: redis.Redis, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_queue_depths(broker).values()):
        time.sleep(1)


def _descendants(pid: int) -> list[int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    found, frontier = [], {pid}
    while frontier:
        frontier = {c for c, p in parents.items() if p in frontier}
        found += frontier
    return found


def _role(pid: int) -> str:
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "exited"
    if "gunicorn" in cmd:
        return "web"
    if " beat " in cmd:
        return "beat"
    if " worker " in cmd:
        return "worker " + cmd.split(" -Q ")[1].split()[0]
    if "locust" in cmd:
        return "locust (load generator)"
    return cmd[:40]


def _cpu_seconds(pids) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / CLK
        except OSError:
            pass
    return out


def _machine_busy() -> tuple[float, float]:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / CLK, sum(fields) / CLK


def _probe_graphql(port: int, key: str, series_id: int) -> bool:
    body = json.dumps({"query": "query($id: ID!) { series(id: $id) { symbol } }", "variables": {"id": str(series_id)}})
    try:
        status, raw = _request(port, "POST", "/graphql/", body,
                               {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        return status == 200 and "errors" not in json.loads(raw)
    except (OSError, ValueError):
        return False


def main() -> int:
    env = _env()
    _ensure_database(env["DATABASE_URL"])
    for db in _redis_dbs(env["REDIS_URL"]):
        db.flushdb()
    broker = _redis_dbs(env["REDIS_URL"])[0]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="anomalyhub-load-") as tmp:
        tmp = Path(tmp)
        config_path, samples_path = tmp / "tenants.json", tmp / "samples.json"
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=REPO, env=env, check=True)
        subprocess.run([sys.executable, "-m", "tests.load.prepare", str(config_path)], cwd=REPO, env=env, check=True,
                       stdout=subprocess.DEVNULL)
        config = json.loads(config_path.read_text())
        port = free_port()
        log = open(tmp / "serve.log", "wb")
        (tmp / "metrics").mkdir()
        server_env = {**WORKERS, **env, "WEB_BIND": f"127.0.0.1:{port}", "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics"),
                      "CELERY_BEAT_SCHEDULE": str(tmp / "beat-schedule"),
                      "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        if WEB_PROCESSES:
            server_env["WEB_PROCESSES"] = WEB_PROCESSES
        server = subprocess.Popen([sys.executable, "-m", "honcho", "-f", "Procfile", "start"],
                                  cwd=REPO, env=server_env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            _wait_ready(port, server)
            print(f"load: server ready on 127.0.0.1:{port}; ingesting history", flush=True)
            _history(port, config)
            _drain(broker)
            autovacuum = _analyze(env["DATABASE_URL"])
            tenant = config["tenants"][0]
            graphql = _probe_graphql(port, tenant["read_keys"][0], tenant["series"][0]["id"])
            users = int(os.environ.get("LOAD_READERS", "30")) + len(config["tenants"]) + int(
                os.environ.get("LOAD_SUBSCRIBERS", "16"))
            locust_env = {**os.environ, "LOAD_CONFIG": str(config_path), "LOAD_SAMPLES": str(samples_path),
                          "LOAD_GRAPHQL": "1" if graphql else "0"}
            print(f"load: {users} users for {SECONDS}s (GraphQL {'on' if graphql else 'off: /graphql/ not answering'})",
                  flush=True)
            server_pids = _descendants(server.pid)
            locust = subprocess.Popen(
                [sys.executable, "-m", "locust", "-f", "tests/load/locustfile.py", "--headless", "--only-summary",
                 "--host", f"http://127.0.0.1:{port}", "-u", str(users), "-r", str(users), "-t", f"{SECONDS + 5}s",
                 "--stop-timeout", "5", "--loglevel", "WARNING"],
                cwd=REPO, env=locust_env, stdout=open(tmp / "locust.log", "wb"), stderr=subprocess.STDOUT)
            time.sleep(5)  # spawning; the samples start when every user runs
            pids = [*server_pids, locust.pid]
            cpu0, busy0, depth0 = _cpu_seconds(pids), _machine_busy(), _queue_depths(broker)
            t0 = time.monotonic()
            load0 = os.getloadavg()[0]
            time.sleep(SECONDS)
            cpu1, busy1, depth1 = _cpu_seconds(pids), _machine_busy(), _queue_depths(broker)
            roles = {pid: _role(pid) for pid in cpu1}
            window = time.monotonic() - t0
            locust.wait(timeout=120)
        finally:
            server.send_signal(signal.SIGTERM)
            stop_code = server.wait(timeout=90)
            log.close()
            # Kept for reading after the run (500s, tracebacks): the temporary directory goes.
            Path(tempfile.gettempdir(), "anomalyhub-load-serve.log").write_bytes((tmp / "serve.log").read_bytes())
        samples = json.loads(samples_path.read_text())
        cpu = defaultdict(float)
        for pid, seconds in cpu1.items():
            if pid in cpu0:
                cpu[roles[pid]] += (seconds - cpu0[pid]) / window
        machine = ((busy1[0] - busy0[0]) / (busy1[1] - busy0[1])) * os.cpu_count()
        web = sum(1 for role in roles.values() if role == "web") - 1  # gunicorn's own process serves nothing
        text = _report(samples, dict(cpu), machine, graphql, depth0, depth1, stop_code, load0, os.getloadavg()[0],
                       autovacuum, web)
    REPORT.write_text(text)
    print(text)
    print(f"load: report written to {REPORT} in {time.monotonic() - started:.0f}s")
    return 0


def _report(samples, cpu, machine_cores, graphql, depth0, depth1, stop_code, load_before, load_after,
            autovacuum, web_processes) -> str:
    rows = samples["samples"]
    start = samples["since"] + 2  # let the first second settle
    rows = [r for r in rows if r[0] >= start]
    end = max(r[0] for r in rows)
    span = end - start
    by_name = defaultdict(list)
    for _, kind, name, ms, error in rows:
        by_name[(kind, name)].append((ms, error))

    def line(label, items):
        times = [ms for ms, _ in items]
        errors = sum(1 for _, e in items if e)
        return (f"| {label} | {len(items)} | {len(items) / span:.1f} | {percentile(times, 50):.1f} | "
                f"{percentile(times, 99):.1f} | {max(times):.1f} | {errors} |")

    api = [i for (kind, name), items in by_name.items() if kind != "WS" and "ingest" not in name for i in items]
    ingest = [i for (kind, name), items in by_name.items() if "ingest" in name for i in items]
    api_rps, api_p99 = len(api) / span, percentile([ms for ms, _ in api], 99)
    errors = sum(1 for kind_items in by_name.values() for _, e in kind_items if e)
    ticks_per_s = len(ingest) * 100 / span
    http_rps = (len(api) + len(ingest)) / span
    web_ms = cpu.get("web", 0) / http_rps * 1000 if http_rps else 0.0
    met = api_rps >= 0.95 * API_RPS and api_p99 < TARGET_P99_MS and errors == 0 and ticks_per_s >= 0.95 * TICKS_PER_S
    cpu_model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), platform.processor())
    first_errors = sorted({e for items in by_name.values() for _, e in items if e})[:5]
    out = [
        HEADINGS[0],
        "",
        GENERATED,
        "",
        f"- Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {platform.node()}, {os.cpu_count()} cores ({cpu_model}), "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, {platform.platform()}; "
        f"shared with other work: load average {load_before:.1f} at the start, {load_after:.1f} at the end",
        f"- Server: the Procfile under honcho (DJANGO_ENV=production), gunicorn with {web_processes} uvicorn processes "
        f"({'HTTP_THREADS=' + os.environ['HTTP_THREADS'] if os.environ.get('HTTP_THREADS') else 'default HTTP_THREADS'}), "
        f"workers "
        f"`{' '.join(f'{k}={os.environ.get(k, v)}' for k, v in WORKERS.items())}`, beat; PostgreSQL and Redis on the same machine; locust on the same machine too. "
        f"PostgreSQL autovacuum is {autovacuum} here: the harness runs ANALYZE after the history, as "
        "autovacuum keeps statistics in production",
        f"- Load: {SECONDS} s measured; REST reads + GraphQL paced at {API_RPS:.0f} requests/s by "
        f"{os.environ.get('LOAD_READERS', '30')} users over {len(set(n for n in by_name))} endpoints, ingest "
        f"{TICKS_PER_S:.0f} ticks/s (100-tick POSTs, one ingester per organization, each on its own random phase), "
        f"{os.environ.get('LOAD_SUBSCRIBERS', '16')} WebSocket subscribers; 8 organizations. "
        f"GraphQL: {'included' if graphql else 'not included (/graphql/ did not answer; weight 0)'}",
        "",
        HEADINGS[1],
        "",
        f"- API (REST reads + GraphQL): **{api_rps:.0f} requests/s, p99 {api_p99:.0f} ms** "
        f"(target 300 requests/s, p99 < {TARGET_P99_MS} ms)",
        f"- Ingest: **{ticks_per_s:.0f} ticks/s** (target 1,000)",
        f"- Errors: **{errors}** (target 0)",
        f"- Target {'**met**' if met else '**not met** on this run (see below)'}",
        f"- Queues (ingest/detect/train/alerts) at the start / end of the window: {depth0} / {depth1}",
        f"- Server stopped with exit status {stop_code} ({HONCHO_STOPPED_ON_SIGTERM} = honcho stopped every process on SIGTERM)",
        "",
        "| type / endpoint | requests | per s | p50 ms | p99 ms | max ms | errors |",
        "|---|---|---|---|---|---|---|",
        line("**API total (REST + GraphQL)**", api),
        *[line(f"{kind} {name}" if kind == "WS" else name, items) for (kind, name), items in sorted(by_name.items())],
        "",
        "WebSocket rows: latency from the tick's timestamp (set by the client just before its POST) to the "
        "event's arrival at a subscriber, so it includes the POST, the commit, the fan-out and detection "
        "(for anomalies).",
        "",
        HEADINGS[2],
        "",
        "| process | cores |",
        "|---|---|",
        *[f"| {name} | {cores:.2f} |" for name, cores in sorted(cpu.items(), key=lambda kv: -kv[1])],
        f"| whole machine (all processes, including other work) | {machine_cores:.2f} of {os.cpu_count()} |",
        "",
        # Comparable across runs on a busy machine, unlike latency: what one request costs the server.
        f"Web CPU per HTTP request (API + ingest): **{web_ms:.1f} ms** "
        f"({cpu.get('web', 0):.2f} cores / {http_rps:.0f} requests/s; WebSocket fan-out included).",
    ]
    if first_errors:
        out += ["", "First errors (the server's log of the run is kept in $TMPDIR/anomalyhub-load-serve.log):", "",
                *[f"- `{e[:160]}`" for e in first_errors]]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    sys.exit(main())
