"""The Celery app. Queues: ingest, detect (CPU, prefetch 1), train (CPU, long), alerts (I/O)."""

import gc
import os
from contextlib import suppress
from queue import Empty

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready
from kombu import Queue
from kombu.transport import redis as kombu_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anomalyhub.settings")


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, whose close() also runs to the end when Redis has just gone away.

    Why: a worker waiting in BRPOP when Redis drops lost the whole `serve` set. kombu's close()
    first reads the reply of the BRPOP in flight; that read raises ConnectionError, so close()
    stops before it marks the channel closed. Celery's reconnect path closes the connection twice
    (Consumer.on_connection_error_after_connected: collect(), which swallows that error and
    detaches the transport, then close()); the second channel close() then restores the worker's
    unacknowledged messages (every countdown task it holds, e.g. the rollup refreshes) through the
    detached transport: AttributeError "'NoneType' object has no attribute 'hostname'", which no
    one catches, so the worker exits 1 ("Unrecoverable error") and serve stops everything.

    Reading that reply with broker errors ignored lets the first close() mark the channel closed
    before its restore (which fails while Redis is down; kombu ignores that), so the second does
    nothing. Unrestored messages stay in Redis' unacked index until the visibility timeout; a Redis
    that restarted empty lost them anyway, and the beat sweeps redo that work.

    Upstream: the unguarded read came with celery/kombu#1733 ("Prevent redis task loss when closing
    connection while in poll") and is still in kombu 5.7.0; the AttributeError it leads to is the
    one of celery/kombu#582 and #970. Still needed: with kombu's stock transport,
    tests/reliability/test_worker_outlives_broker_restart.py fails (the worker exits). Drop this
    class once that test passes without it."""

    def close(self):
        if self._in_poll:
            with suppress(Empty, *self.connection_errors):
                self._brpop_read()
        super().close()


class RedisTransport(kombu_redis.Transport):
    Channel = RedisChannel


app = Celery("anomalyhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("ingest", "detect", "train", "alerts")]
# Tasks are named "<app>.<verb>"; the prefix picks the queue.
app.conf.task_routes = {
    "watchlists.*": {"queue": "ingest"},
    "detection.train": {"queue": "train"},
    "detection.train_*": {"queue": "train"},
    "detection.history": {"queue": "train"},  # history runs: long, like training
    "detection.*": {"queue": "detect"},
    "alerts.*": {"queue": "alerts"},
}
app.autodiscover_tasks()
# Provider tasks live in a sub-package that autodiscovery of the app list does not reach.
app.autodiscover_tasks(["watchlists.providers"])

# Celery's Django fixup closes every database connection before and after every task unless
# DB_REUSE_MAX is set: each detection run opened a new PostgreSQL connection (and prepared its
# statements again), which cost more than the run. Connections now live by Django's own rules,
# as for a request: closed once older than CONN_MAX_AGE, or unusable after an error.
app.conf.CELERY_DB_REUSE_MAX = 2**62  # the fixup closes every 2 x this many calls: never


@task_prerun.connect
@task_postrun.connect
def _close_old_connections(task=None, **kwargs):
    # Eagerly run tasks (embedded mode, tests) share their caller's connection and transaction.
    if not getattr(task.request, "is_eager", False):
        from django.db import close_old_connections

        close_old_connections()


@worker_process_init.connect
@worker_ready.connect
def _freeze_startup_heap(**kwargs):
    # What a worker holds once started (Django, the apps, numpy, pandas, the task modules: ~235k
    # objects) lives as long as the process. Frozen, a full collection no longer walks it: one took
    # 17-100 ms in a process like a pool worker, a pause in whatever pass was running. The web
    # processes do the same (anomalyhub/asgi.py).
    gc.collect()
    gc.freeze()
