"""Production process model without containers: `manage.py serve` (what `make run` uses when
DATABASE_URL and REDIS_URL are set).

Starts, as separate processes, the ASGI server (daphne: HTTP + WebSockets), one Celery worker per
queue group and Celery beat, like a Procfile runner (foreman, honcho). Ctrl-C or SIGTERM stops them
all: each gets SIGTERM (daphne closes, Celery workers finish their current task), and whatever is
still running after the grace period is killed with its whole process group. If one process dies
on its own, the others are stopped too and the exit status is 1, so a supervisor can restart the
set. A clean stop exits 0.

Every child runs in its own session, so a terminal's Ctrl-C reaches only this runner, which then
stops the children in order. Several daphne processes serve one port (--web-processes, default
WEB_PROCESSES: cores + 1 in production), each on its own listening socket (`--fd`) bound with SO_REUSEPORT,
so the kernel spreads new connections evenly between them. (One shared socket did not: Twisted
accepts every pending connection in one go, so whichever process woke first took most of a burst
of keep-alive clients, 43 of 54 under `make load`, and its one GIL became the bottleneck.)
docker/compose.yaml runs the same commands, one per container; its web container is
`serve --web-only` (the daphne processes alone).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

# Queue groups: ingest and detect share the real-time path; training is long and CPU-bound;
# alerts are I/O-bound. "<queues>:<concurrency>", space-separated.
DEFAULT_WORKERS = "ingest,detect:2 train:1 alerts:2"
QUEUES = ("ingest", "detect", "train", "alerts")
GRACE_S = 30.0
POLL_S = 0.2
CLEAN_EXITS = {0, -signal.SIGTERM, -signal.SIGINT}


@dataclass
class Child:
    name: str
    argv: list[str]
    pass_fds: tuple[int, ...] = ()
    proc: subprocess.Popen | None = field(default=None, repr=False)


def parse_workers(spec: str) -> list[tuple[str, int]]:
    """"ingest,detect:2 train:1" -> [("ingest,detect", 2), ("train", 1)]; every queue must exist."""
    groups = []
    for item in spec.split():
        queues, _, concurrency = item.partition(":")
        unknown = set(queues.split(",")) - set(QUEUES)
        if unknown or not queues:
            raise CommandError(f"unknown queue(s) {sorted(unknown)} in --workers; queues are {', '.join(QUEUES)}")
        groups.append((queues, int(concurrency or 1)))
    return groups


def celery(*args: str) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", "anomalyhub", *args]


def listeners(host: str, port: int, count: int) -> list[socket.socket]:
    """`count` listening sockets on one address, one per web process, bound with SO_REUSEPORT.
    SO_REUSEPORT would also let this join a port another server of the same user already holds
    that way (a second `make run`, say): refused up front instead."""
    if port:
        with contextlib.suppress(OSError), socket.create_connection(
                ("127.0.0.1" if host in ("0.0.0.0", "") else host, port), timeout=1):
            raise CommandError(f"{host}:{port} is already in use: stop what listens there, or give another port.")
    out = []
    try:
        for _ in range(count):
            sock = socket.create_server((host, port), backlog=1024, reuse_port=True)
            sock.set_inheritable(True)
            out.append(sock)
            port = sock.getsockname()[1]  # port 0: the others join the port the first one got
    except OSError:
        for sock in out:
            sock.close()
        raise
    return out


def process_table(*, listen_fds: list[int], workers: list[tuple[str, int]], beat: bool,
                  schedule_file: str, node_suffix: str, log_level: str) -> list[Child]:
    children = [
        # No --proxy-headers: daphne would take X-Forwarded-For from anyone. The application
        # believes it from TRUSTED_PROXIES only (anomalyhub.lib.client_address).
        Child(f"web.{i + 1}", [sys.executable, "-m", "daphne", "--fd", str(fd), "-v", "0",
                               "anomalyhub.asgi:application"], pass_fds=(fd,))
        for i, fd in enumerate(listen_fds)
    ]
    for queues, concurrency in workers:
        group = queues.replace(",", "-")
        children.append(Child(f"worker.{group}", celery(
            "worker", "-Q", queues, "-c", str(concurrency), "-n", f"{group}.{node_suffix}@%h",
            "-l", log_level)))
    if beat:
        children.append(Child("beat", celery("beat", "-s", schedule_file, "-l", log_level)))
    return children


class Command(BaseCommand):
    help = "Run the web server (daphne), one Celery worker per queue group and beat; Ctrl-C stops them all."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--web-processes", type=int, default=settings.WEB_PROCESSES,
                            help="daphne processes sharing the listening socket, one core each "
                                 f"(default: WEB_PROCESSES, here {settings.WEB_PROCESSES})")
        parser.add_argument("--workers", default=DEFAULT_WORKERS,
                            help=f'queue groups as "<queues>:<concurrency> ..." (default "{DEFAULT_WORKERS}")')
        parser.add_argument("--no-beat", action="store_true")
        parser.add_argument("--web-only", action="store_true",
                            help="only the daphne processes: no workers, no beat (docker's web container)")
        parser.add_argument("--grace", type=float, default=GRACE_S,
                            help="seconds the processes get to stop before they are killed")

    def handle(self, *args, addrport, web_processes, workers, no_beat, web_only, grace, **options):
        if settings.CELERY_TASK_ALWAYS_EAGER:
            raise CommandError("serve needs REDIS_URL (and CELERY_TASK_ALWAYS_EAGER unset): tasks would never "
                               "reach the workers. For the embedded default use `manage.py rundemo`.")
        if web_processes < 1:
            raise CommandError("--web-processes must be at least 1")
        host, _, port = addrport.rpartition(":")
        self.stop_requested = 0
        sockets = listeners(host or "127.0.0.1", int(port), web_processes)
        workdir = tempfile.mkdtemp(prefix="anomalyhub-serve-")
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": os.environ.get("DJANGO_SETTINGS_MODULE", "anomalyhub.settings"),
               "PYTHONUNBUFFERED": "1"}
        if not env.get("PROMETHEUS_MULTIPROC_DIR"):
            # One machine, several processes: /metrics on the web process aggregates every process's.
            env["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(workdir, "metrics")
            os.mkdir(env["PROMETHEUS_MULTIPROC_DIR"])
        children = process_table(
            listen_fds=[sock.fileno() for sock in sockets],
            workers=[] if web_only else parse_workers(workers), beat=not (no_beat or web_only),
            schedule_file=os.path.join(workdir, "celerybeat-schedule"), node_suffix=str(os.getpid()), log_level=settings.LOG_LEVEL.lower())
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in children:
                # A new session: the terminal's Ctrl-C reaches only this runner, which stops them in order.
                child.proc = subprocess.Popen(child.argv, cwd=settings.BASE_DIR, env=env, pass_fds=child.pass_fds,
                                              start_new_session=True)
                self.stdout.write(f"serve: started {child.name} (pid {child.proc.pid})")
            for sock in sockets:
                sock.close()  # the daphne processes hold their own copies
            self._announce(host or "127.0.0.1", port, children)
            status = self._supervise(children)
        finally:
            clean = self._stop(children, grace)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in sockets:
                sock.close()
            shutil.rmtree(workdir, ignore_errors=True)
        if status or not clean:
            sys.exit(1)
        self.stdout.write("serve: every process stopped cleanly")

    def _on_signal(self, signum, frame):
        self.stop_requested += 1
        if self.stop_requested > 1:  # a second Ctrl-C: no more waiting
            raise KeyboardInterrupt

    def _announce(self, host: str, port: str, children: list[Child]) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.stop_requested:
            if any(c.proc.poll() is not None for c in children):
                return
            try:
                urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=2).close()
            except urllib.error.HTTPError:
                pass  # it answered: production refuses a Host such as 0.0.0.0 that is not in ALLOWED_HOSTS
            except OSError:
                time.sleep(POLL_S)
                continue
            self.stdout.write(f"serve: AnomalyHub is serving on http://{host}:{port}/ (Ctrl-C stops everything)")
            return

    def _supervise(self, children: list[Child]) -> int:
        """Waits for a stop signal (-> 0) or for a child to die on its own (-> 1)."""
        while not self.stop_requested:
            for child in children:
                code = child.proc.poll()
                if code is not None:
                    self.stderr.write(f"serve: {child.name} (pid {child.proc.pid}) exited with {code}; stopping all")
                    return 1
            time.sleep(POLL_S)
        self.stdout.write("serve: stopping")
        return 0

    def _stop(self, children: list[Child], grace: float) -> bool:
        """SIGTERM to every child, then SIGKILL to the process group of any still alive after `grace`.
        True when every child exited by itself with a clean status."""
        started = [c for c in children if c.proc is not None]
        for child in started:
            if child.proc.poll() is None:
                child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        clean = True
        for child in started:
            try:
                child.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                self.stderr.write(f"serve: {child.name} (pid {child.proc.pid}) did not stop; killing it")
                clean = False
            # Its pool processes too: they share its process group (it leads a session of its own).
            try:
                os.killpg(child.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            code = child.proc.wait()
            if code not in CLEAN_EXITS and clean:
                self.stderr.write(f"serve: {child.name} exited with {code}")
                clean = False
        return clean
