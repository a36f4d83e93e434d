"""The Celery app. Queues: ingest, detect (CPU, prefetch 1), train (CPU, long), alerts (I/O)."""

import os

from celery import Celery
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
