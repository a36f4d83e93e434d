"""The real web server (the Procfile's `web`: gunicorn + uvicorn workers) for benchmarks and tests
that must go through HTTP.

`live_server()` starts gunicorn with anomalyhub/gunicorn_conf.py serving `anomalyhub.asgi:application`
(one worker process unless WEB_PROCESSES says otherwise) on a free local port with the bench's environment, waits for /healthz, yields the base URL and always terminates the process it started
(by its PID) on the way out, even when the benchmark fails.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from .harness import REPO

START_TIMEOUT_S = 60


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def _tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # gunicorn's workers too: they share its new session's group
        proc.wait(timeout=10)


@contextlib.contextmanager
def live_server(env: dict[str, str | None] | None = None, *, app: str = "anomalyhub.asgi:application",
                port: int | None = None, keep_log: Path | None = None) -> Iterator[str]:
    """Yields "http://127.0.0.1:<port>" of the web server serving `app`. `keep_log` copies the
    server's log there when it stops (e.g. beside a failed browser walk's screenshots). `env` adds
    to this process's environment; a None value removes that variable."""
    port = port or free_port()
    merged = {**os.environ, "DJANGO_SETTINGS_MODULE": "anomalyhub.settings", "WEB_PROCESSES": "1",
              "LOG_LEVEL": "INFO" if keep_log else "WARNING", **(env or {}), "WEB_BIND": f"127.0.0.1:{port}"}
    server_env = {k: v for k, v in merged.items() if v is not None}
    with tempfile.TemporaryDirectory(prefix="web-") as tmp:
        log = Path(tmp) / "web.log"
        with open(log, "wb") as out:
            # `python -m gunicorn` from the repo root: the same venv, and the project on sys.path.
            proc = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:anomalyhub.gunicorn_conf", app],
                cwd=REPO, env=server_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while not _healthy(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the web server did not become healthy on port {port}:\n{_tail(log)}")
                time.sleep(0.2)
            yield f"http://127.0.0.1:{port}"
        finally:
            _stop(proc)
            if keep_log:
                keep_log.parent.mkdir(parents=True, exist_ok=True)
                keep_log.write_bytes(log.read_bytes())
