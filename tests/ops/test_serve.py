"""The production process model: the Procfile under honcho, what `make run` starts with DATABASE_URL
and REDIS_URL set and what the container roles run one by one. It starts, serves HTTP and WebSockets,
its workers answer, gunicorn replaces a web process that dies, and Ctrl-C or SIGTERM stops every
process it started (no orphans)."""

import contextlib
import http.client
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from celery import Celery
from django.conf import settings

from tests.benchmarks.server import free_port
from tests.workers import wait_for, worker_env

pytestmark = [pytest.mark.redis]

NODES = ("ingest-detect", "train", "alerts")
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60
# honcho's exit status after it stopped everything on a signal (128 + the signal, as a shell's).
STOPPED_BY = {signal.SIGINT: 130, signal.SIGTERM: 143}


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
def procfile_env(django_db_setup, tmp_path):
    """The test run's own database and Redis dbs (broker, cache, channel layer: REDIS_URL's db and the
    next two), flushed: the Procfile's workers consume every queue. One web process per test, two
    where the test says, one worker process per queue group."""
    base = urlsplit(settings.REDIS_URL)
    first = int(base.path.strip("/") or 0)
    for db in range(first, first + 3):
        redis.Redis.from_url(base._replace(path=f"/{db}").geturl()).flushdb()
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    bin_dir = str(Path(sys.executable).parent)
    yield {**worker_env(), "CELERY_TASK_ALWAYS_EAGER": "false", "LOG_LEVEL": "WARNING", "WEB_PROCESSES": "1",
           "WEB_BIND": f"127.0.0.1:{free_port()}", "REALTIME_CONCURRENCY": "1", "ALERTS_CONCURRENCY": "1",
           "CELERY_BEAT_SCHEDULE": str(tmp_path / "beat-schedule"), "PROMETHEUS_MULTIPROC_DIR": str(metrics),
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for db in range(first, first + 3):
        redis.Redis.from_url(base._replace(path=f"/{db}").geturl()).flushdb()


def _honcho(env: dict, log: Path, *processes: str) -> subprocess.Popen:
    """`honcho start [processes]` on the Procfile, as `make run` and docker/entrypoint.sh run it."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "honcho", "-f", "Procfile", "start", *processes],
                                cwd=settings.BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _port(env: dict) -> int:
    return int(env["WEB_BIND"].rsplit(":", 1)[1])


def _commands(pids) -> dict[int, bytes]:
    out = {}
    for pid in pids:
        with contextlib.suppress(OSError):
            out[pid] = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    return out


def _web_processes(runner: subprocess.Popen) -> dict[int, bytes]:
    return {pid: c for pid, c in _commands(_descendants(runner.pid)).items() if b"gunicorn" in c and b"/bin/sh" not in c}


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
                         ids=["ctrl-c", "sigterm"])
def test_the_procfile_starts_serves_and_stops_every_process(procfile_env, tmp_path, stop_signal):
    env, log, port = {**procfile_env, "WEB_PROCESSES": "2"}, tmp_path / "honcho.log", _port(procfile_env)
    runner = _honcho(env, log)
    try:
        wait_for(lambda: _answers(port, "/healthz") or runner.poll() is not None, START_TIMEOUT_S, 0.5, "/healthz")
        assert runner.poll() is None, log.read_text()
        assert _answers(port, "/readyz"), (_get(port, "/readyz"), log.read_text()[-3000:])

        # Every worker group answers over the broker.
        broker = Celery(broker=settings.CELERY_BROKER_URL)
        answered: set[str] = set()

        def all_pong():
            for reply in broker.control.ping(timeout=1.0):
                answered.update(name.split("@")[0] for name, body in reply.items() if body == {"ok": "pong"})
            return set(NODES) <= answered

        wait_for(all_pong, START_TIMEOUT_S, 0.5, f"pings from {NODES} (got {answered})")

        # /metrics aggregates the processes (multiprocess mode) and reads the queues.
        status, body = _get(port, "/metrics")
        assert status == 200 and b"anomalyhub_queue_depth" in body

        # gunicorn and its two web processes, three workers (each with its pool) and beat.
        processes = _descendants(runner.pid)
        commands = list(_commands(processes).values())
        assert len(_web_processes(runner)) == 3, commands
        assert sum(b" worker " in c and b"-n " in c and b"/bin/sh" not in c for c in commands) >= 2 * len(NODES)
        assert sum(b" beat " in c and b"/bin/sh" not in c for c in commands) == 1

        runner.send_signal(stop_signal)
        assert runner.wait(timeout=STOP_TIMEOUT_S) == STOPPED_BY[stop_signal], log.read_text()[-3000:]
        wait_for(lambda: not any(_alive(pid) for pid in processes), 10, 0.1, "every child process to exit")
        assert "SIGKILL" not in log.read_text(), "a process had to be killed: " + log.read_text()[-3000:]
        assert not _answers(port, "/healthz")
    finally:
        _kill_all(runner)


def test_gunicorn_replaces_a_web_process_that_dies(procfile_env, tmp_path):
    """The web server's own worker management: a killed web process is replaced and the port keeps
    answering; the set is not torn down."""
    log, port = tmp_path / "honcho.log", _port(procfile_env)
    runner = _honcho(procfile_env, log, "web")
    try:
        wait_for(lambda: _answers(port, "/healthz") or runner.poll() is not None, START_TIMEOUT_S, 0.5, "/healthz")
        master = min(_web_processes(runner))  # gunicorn starts before it forks its workers
        (victim,) = set(_web_processes(runner)) - {master}
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: set(_web_processes(runner)) - {master, victim}, START_TIMEOUT_S, 0.2, "a new web process")
        wait_for(lambda: _answers(port, "/healthz"), START_TIMEOUT_S, 0.2, "/healthz after the replacement")
        assert runner.poll() is None, log.read_text()[-3000:]
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=STOP_TIMEOUT_S) == STOPPED_BY[signal.SIGTERM], log.read_text()[-3000:]
    finally:
        _kill_all(runner)


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


def test_the_web_role_runs_the_web_processes_alone(procfile_env, tmp_path):
    """docker's web container: `honcho start web`, WEB_PROCESSES uvicorn processes under gunicorn on
    one port and nothing else (the workers and beat have containers of their own). A burst of
    keep-alive clients reaches both processes, and a second server on the same port is refused."""
    env, log, port = {**procfile_env, "WEB_PROCESSES": "2"}, tmp_path / "honcho.log", _port(procfile_env)
    runner = _honcho(env, log, "web")
    try:
        wait_for(lambda: _answers(port, "/healthz") or runner.poll() is not None, START_TIMEOUT_S, 0.5, "/healthz")
        assert runner.poll() is None, log.read_text()
        commands = list(_commands(_descendants(runner.pid)).values())
        assert len(_web_processes(runner)) == 3, commands
        assert not any(b"celery" in c for c in commands), commands

        clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(40)]
        for conn in clients:
            conn.connect()
            time.sleep(0.01)  # clients arriving over 0.4 s, as a page's requests do
        for conn in clients:  # keep-alive: each stays with the process that accepted it
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() is not None
        held = sorted(_established(pid, port) for pid in _web_processes(runner))
        for conn in clients:
            conn.close()
        # Both processes take connections. How evenly is the kernel's and uvicorn's affair: gunicorn's
        # processes share one listening socket, and an idle one may accept most of a burst (seen:
        # 3 and 37 of 40, where daphne's SO_REUSEPORT sockets had kept each above 8).
        assert sum(held) == 40 and held[1] >= 1, f"connections per web process (gunicorn first): {held}"

        second = _honcho(env, tmp_path / "second.log", "web")
        assert second.wait(timeout=STOP_TIMEOUT_S) != 0
        assert "in use" in (tmp_path / "second.log").read_text(), (tmp_path / "second.log").read_text()[-2000:]
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(timeout=STOP_TIMEOUT_S) == STOPPED_BY[signal.SIGTERM], log.read_text()[-3000:]
    finally:
        _kill_all(runner)
