"""The Celery app. Queues: ingest, detect (CPU, prefetch 1), train (CPU, long), alerts (I/O)."""

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun
from kombu import Queue

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anomalyhub.settings")

app = Celery("anomalyhub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.task_queues = [Queue(name) for name in ("ingest", "detect", "train", "alerts")]
# Tasks are named "<app>.<verb>"; the prefix picks the queue.
app.conf.task_routes = {
    "watchlists.*": {"queue": "ingest"},
    "detection.train": {"queue": "train"},
    "detection.train_*": {"queue": "train"},
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
