"""Real Celery worker processes for crash tests: started, killed (SIGKILL) and restarted by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from contextlib import contextmanager

from django.conf import settings
from django.db import connection


def worker_env(**extra) -> dict:
    """The test process's own database (the test DB) and Redis, with tasks really queued."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    return {**os.environ, "DATABASE_URL": url, "REDIS_URL": settings.REDIS_URL, "DJANGO_ENV": "test",
            "CELERY_TASK_ALWAYS_EAGER": "false", **{k: str(v) for k, v in extra.items()}}


class Worker:
    def __init__(self, queues: str, env: dict):
        # The log goes to a file, not a pipe: nobody reads a pipe while the test waits, and once 64 KB
        # of it are unread the worker blocks on its next log line, making no progress and saying nothing.
        self.log = tempfile.TemporaryFile()
        self.queues = queues
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "anomalyhub", "worker", "-Q", queues, "--pool=solo",
             "--without-heartbeat", "--without-gossip", "--without-mingle", "-l", "warning"],
            env=env, cwd=settings.BASE_DIR, stdout=subprocess.DEVNULL, stderr=self.log, start_new_session=True)
        _STARTED.add(self)

    def log_tail(self, chars: int = 3000) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")[-chars:]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no cleanup, no ack, no warm shutdown — a crash."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc.poll() is None


@contextmanager
def queued_for_real():
    """Makes .delay() in this process send to the broker instead of running eagerly."""
    from anomalyhub.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = False
    app.control.purge()  # the test broker db holds nothing of value between tests
    try:
        yield app
    finally:
        app.conf.task_always_eager = before


def wait_for(predicate, timeout: float, interval: float = 0.05, message: str = "condition"):
    """Polls until predicate() holds; a timeout shows the log of every worker of the test still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    logs = "".join(f"\n--- worker {w.pid} (-Q {w.queues}) log:\n{w.log_tail() or '(empty)'}"
                   for w in list(_STARTED) if w.alive())
    raise AssertionError(f"timed out after {timeout}s waiting for {message}{logs}")


_STARTED: weakref.WeakSet[Worker] = weakref.WeakSet()
