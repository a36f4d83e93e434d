"""Workers keep their database connection between tasks, under Django's rules (CONN_MAX_AGE, errors)."""

import time
from types import SimpleNamespace

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from anomalyhub.celery import _close_old_connections, app


def _task(eager: bool):
    return SimpleNamespace(request=SimpleNamespace(is_eager=eager))


def test_celerys_django_fixup_no_longer_closes_connections_around_every_task():
    fixup = DjangoWorkerFixup(app)
    for _ in range(1000):
        fixup.close_database()
    assert fixup._db_recycles == 1000  # counted, never reached the close


@pytest.mark.django_db(transaction=True)
def test_a_task_keeps_a_young_connection_and_closes_an_expired_one():
    connection.ensure_connection()
    raw = connection.connection
    _close_old_connections(task=_task(eager=False))
    assert connection.connection is raw
    connection.close_at = time.monotonic() - 1  # older than CONN_MAX_AGE
    _close_old_connections(task=_task(eager=True))  # an eager task shares its caller's: untouched
    assert connection.connection is raw
    _close_old_connections(task=_task(eager=False))
    assert connection.connection is None


def test_worker_processes_freeze_their_startup_heap():
    import gc

    from celery.signals import worker_process_init, worker_ready

    from anomalyhub.celery import _freeze_startup_heap

    for signal in (worker_process_init, worker_ready):  # pool processes, and the main (solo) process
        assert _freeze_startup_heap in [ref() for _, ref in signal.receivers]
    try:
        _freeze_startup_heap()
        assert gc.get_freeze_count() > 10_000
    finally:
        gc.unfreeze()
