"""The production process model (`manage.py serve`, what `make run` starts with DATABASE_URL and
REDIS_URL set): it starts, serves HTTP and WebSockets, its workers answer, and Ctrl-C or SIGTERM
stops every process it started (no orphans) with exit status 0."""

import contextlib
import http.client
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from celery import Celery
from django.conf import settings

from tests.benchmarks.server import free_port
from tests.workers import wait_for, worker_env

pytestmark = [pytest.mark.redis]

# Redis dbs 13-15 (broker, cache, channel layer): the runner's workers consume every queue, so they
# must not share a broker with other test runs' workers on this machine.
OPS_REDIS_URL = "redis://127.0.0.1:6379/13"
WORKERS = "ingest,detect:1 train:1 alerts:1"
NODES = ("ingest-detect", "train", "alerts")
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60


def _get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _answers(port: int, path: str) -> bool:
    try:
        return _get(port, path)[0] == 200
    except OSError:
        return False


def _descendants(pid: int) -> set[int]:
    """Every process below pid, from /proc (children, their pool processes, ...)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _kill_all(runner: subprocess.Popen) -> None:
    """After a failed test: the runner and every process below it (each child leads a session of
    its own, so killing the runner's group alone would leave them running)."""
    if runner.poll() is None:
        for pid in _descendants(runner.pid) | {runner.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        runner.wait()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def ops_redis():
    for db in (13, 14, 15):
        redis.Redis.from_url(f"redis://127.0.0.1:6379/{db}").flushdb()
    yield OPS_REDIS_URL


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
                         ids=["ctrl-c", "sigterm"])
def test_it_starts_serves_and_stops_every_process_cleanly(django_db_setup, ops_redis, tmp_path, stop_signal):
    port = free_port()
    env = {**worker_env(), "REDIS_URL": ops_redis, "CELERY_TASK_ALWAYS_EAGER": "false", "LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        runner = subprocess.Popen(
            [sys.executable, "manage.py", "serve", f"127.0.0.1:{port}", "--web-processes", "2",
             "--workers", WORKERS, "--grace", "30"],
            cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: _answers(port, "/healthz") or runner.poll() is not None, START_TIMEOUT_S, 0.5, "/healthz")
        assert runner.poll() is None, log.read_text()
        assert _answers(port, "/readyz"), _get(port, "/readyz")

        # Every worker group answers over the broker.
        broker = Celery(broker=OPS_REDIS_URL)
        expected = {f"{node}.{runner.pid}" for node in NODES}
        answered: set[str] = set()

        def all_pong():
            for reply in broker.control.ping(timeout=1.0):
                answered.update(name.split("@")[0] for name, body in reply.items() if body == {"ok": "pong"})
            return expected <= answered

        wait_for(all_pong, START_TIMEOUT_S, 0.5, f"pings from {expected} (got {answered})")

        # /metrics aggregates the processes (multiprocess mode) and reads the queues.
        status, body = _get(port, "/metrics")
        assert status == 200 and b"anomalyhub_queue_depth" in body

        # Two daphne processes, three workers (each with its pool) and beat.
        processes = _descendants(runner.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in processes]
        assert sum(b"-m daphne" in c for c in commands) == 2
        assert sum(b" worker " in c and b"-n " in c for c in commands) >= 2 * len(NODES)  # main + pool each
        assert sum(b" beat " in c for c in commands) == 1

        runner.send_signal(stop_signal)
        assert runner.wait(timeout=STOP_TIMEOUT_S) == 0, log.read_text()[-3000:]
        wait_for(lambda: not any(_alive(pid) for pid in processes), 10, 0.1, "every child process to exit")
        assert b"every process stopped cleanly" in log.read_bytes()
        assert not _answers(port, "/healthz")
    finally:
        _kill_all(runner)


def test_it_refuses_to_start_without_a_broker(tmp_path):
    env = {**os.environ, "CELERY_TASK_ALWAYS_EAGER": "true"}
    result = subprocess.run([sys.executable, "manage.py", "serve", "127.0.0.1:1"], cwd=settings.BASE_DIR, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "serve needs REDIS_URL" in result.stderr


def _established(pid: int, port: int) -> int:
    """Client connections to `port` that process `pid` holds, from /proc (its socket inodes)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "01" and fields[9] in inodes:
                count += 1
    return count


def test_web_only_runs_the_web_processes_alone(django_db_setup, tmp_path):
    """docker's web container: `serve --web-only`, WEB_PROCESSES daphne processes on one port and
    nothing else (the workers and beat have containers of their own). A burst of keep-alive
    clients is spread over both processes (one shared socket gave one process ~80% of them), and a
    second server on the same port is refused rather than let in by SO_REUSEPORT."""
    port = free_port()
    env = {**worker_env(), "WEB_PROCESSES": "2", "LOG_LEVEL": "WARNING"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        runner = subprocess.Popen([sys.executable, "manage.py", "serve", f"127.0.0.1:{port}", "--web-only"],
                                  cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        wait_for(lambda: _answers(port, "/healthz") or runner.poll() is not None, START_TIMEOUT_S, 0.5, "/healthz")
        assert runner.poll() is None, log.read_text()
        processes = _descendants(runner.pid)
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ") for pid in processes]
        assert sum(b"-m daphne" in c for c in commands) == 2, commands
        assert not any(b"celery" in c for c in commands), commands

        clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(40)]
        for conn in clients:
            conn.connect()
        for conn in clients:  # keep-alive: each stays with the process that accepted it
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() is not None
        held = sorted(_established(pid, port) for pid, c in zip(processes, commands, strict=True) if b"-m daphne" in c)
        for conn in clients:
            conn.close()
        assert sum(held) == 40 and held[0] >= 8, f"connections per web process: {held}"

        second = subprocess.run([sys.executable, "manage.py", "serve", f"127.0.0.1:{port}", "--web-only"],
                                cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode != 0 and "already in use" in second.stderr, second.stderr[-2000:]
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=STOP_TIMEOUT_S) == 0, log.read_text()[-3000:]
    finally:
        _kill_all(runner)
