"""Private PostgreSQL / Redis / app-server processes for fault tests.

The fault tests restart databases and brokers; they must never touch the shared services on
5432/6379 (other test runs use them). Each helper here starts its own server on a free port
under a temporary directory and stops it by its own PID.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = next((p for p in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
               if (p / "initdb").exists()), None) if Path("/usr/lib/postgresql").exists() else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def _as_postgres(argv: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; run its tools as the postgres OS user when we are root.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PrivatePostgres:
    """A throwaway cluster (trust auth, fsync off: a restart still keeps every commit, as WAL
    reaches the OS cache; only an OS crash would lose it)."""

    def __init__(self):
        if PG_BIN is None:
            raise RuntimeError("PostgreSQL server binaries are missing (/usr/lib/postgresql/*/bin/initdb); "
                               "install the postgresql package")
        self.dir = Path(tempfile.mkdtemp(prefix="ah-rel-pg-"))
        self.port = free_port()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
        self.data = self.dir / "data"
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres",
                                     "--no-sync"]), check=True, capture_output=True)
        self.start()

    def _ctl(self, *args: str) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", opts,
                                     "-l", str(self.dir / "log"), "-w", *args]), check=True, capture_output=True)

    def start(self) -> None:
        self._ctl("start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def restart(self, mode: str = "immediate", down_seconds: float = 0.0) -> None:
        """immediate = a crash: every backend is killed, in-flight transactions are lost, committed
        ones come back through WAL recovery."""
        self.stop(mode)
        time.sleep(down_seconds)
        self.start()

    def url(self, db: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{db}"

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", db,
                              "-AtX", "-v", "ON_ERROR_STOP=1", "-c", sql], check=True, capture_output=True, text=True)
        return out.stdout.strip()

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class PrivateRedis:
    """redis-server without persistence on a free port: a restart loses everything in it, like a
    crashed or replaced Redis; the product must recover from its database alone."""

    def __init__(self):
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                      "--appendonly", "no", "--daemonize", "no"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        wait_port(self.port)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def url(self, db: int = 3) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def close(self) -> None:
        self.kill()


def app_env(database_url: str, redis_url: str, **extra) -> dict:
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url, "DJANGO_ENV": "test",
           "CELERY_TASK_ALWAYS_EAGER": "false", "WEBHOOK_ALLOW_PRIVATE_IPS": "true",
           **{k: str(v) for k, v in extra.items()}}
    env.pop("TEST_DATABASE_NAME", None)
    return env


def manage(env: dict, *args: str) -> str:
    out = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True,
                         text=True)
    return out.stdout


# The Procfile's worker processes by the queues they consume, and the variable giving each its concurrency.
PROCFILE_WORKERS = {"ingest,detect": ("realtime", "REALTIME_CONCURRENCY"), "train": ("train", "TRAIN_CONCURRENCY"),
                    "alerts": ("alerts", "ALERTS_CONCURRENCY")}


class AppServer:
    """The Procfile under honcho, as `make run` starts it: web (gunicorn + uvicorn workers, WEB_PROCESSES
    of them, 1 unless env says) and the worker processes named by `workers` ("<queues>:<concurrency>
    ...", queue groups as the Procfile has them) [+ beat], as one process group."""

    def __init__(self, env: dict, workers: str = "ingest,detect:1", beat: bool = False):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="ah-rel-serve-", suffix=".log", delete=False)
        self.metrics = tempfile.mkdtemp(prefix="ah-rel-metrics-")
        env = {"WEB_PROCESSES": "1", **env, "WEB_BIND": f"127.0.0.1:{self.port}", "PROMETHEUS_MULTIPROC_DIR": self.metrics,
               "CELERY_BEAT_SCHEDULE": os.path.join(self.metrics, "beat-schedule"), "WEB_GRACE_SECONDS": "5",
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
        processes = ["web"]
        for group in workers.split():
            queues, _, concurrency = group.partition(":")
            name, variable = PROCFILE_WORKERS[queues]
            processes.append(name)
            env[variable] = concurrency or "1"
        if beat:
            processes.append("beat")
        self.proc = subprocess.Popen([sys.executable, "-m", "honcho", "-f", "Procfile", "start", *processes],
                                     cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"the Procfile's processes exited with {self.proc.returncode}:\n{self.output()}")
            try:
                urllib.request.urlopen(f"{self.base}/healthz", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        raise AssertionError(f"the web process did not answer /healthz within 60 s:\n{self.output()}")

    def output(self) -> str:
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                # honcho starts each process in a session of its own: every one by its PID.
                import psutil

                for child in [*psutil.Process(self.proc.pid).children(recursive=True), psutil.Process(self.proc.pid)]:
                    child.kill()
                self.proc.wait(timeout=10)
        self.log.close()
        os.unlink(self.log.name)
        shutil.rmtree(self.metrics, ignore_errors=True)


@contextmanager
def private_stack(organizations: list[str], workers: str = "ingest,detect:1", **settings):
    """The Procfile's processes (AppServer) on a private PostgreSQL and Redis, migrated, with one organization per name
    (owner `<name>@example.com`): yields (pg, server, [an admin API key per organization])."""
    pg, redis = PrivatePostgres(), PrivateRedis()
    server = None
    try:
        pg.psql("CREATE DATABASE ah")
        env = app_env(pg.url("ah"), redis.url(), DB_CONN_MAX_AGE=60, **settings)
        manage(env, "migrate", "--noinput")
        keys = [manage(env, "bootstrap_org", "--email", f"{name.lower()}@example.com", "--password",
                       "reliability-pass-1", "--org", name).strip().splitlines()[-1] for name in organizations]
        server = AppServer(env, workers=workers)
        yield pg, server, keys
    finally:
        if server:
            server.stop()
        redis.close()
        pg.close()
