"""A worker runs one rollup refresh at a time, so the detection runs it also serves never wait behind several."""

import pytest
from django.core.cache import cache

from anomalyhub.lib.worker import WORKER_PID
from tests.factories import SeriesFactory
from watchlists import coalesce, tasks

pytestmark = pytest.mark.django_db


@pytest.fixture
def worker_request():
    """The task as a worker runs it (not eagerly), on worker "w1@host"."""
    tasks.refresh_pending_rollups.push_request(is_eager=False, hostname="w1@host")
    yield f"{tasks.ROLLUPS}:running:w1@host:{WORKER_PID}"
    tasks.refresh_pending_rollups.pop_request()


def test_a_refresh_waits_while_another_runs_in_the_same_worker(org_a, worker_request, monkeypatch):
    series = SeriesFactory(organization=org_a)
    coalesce.claim(tasks.ROLLUPS, [series.pk], {series.pk: (1, 2)})
    later, refreshed = [], []
    monkeypatch.setattr(tasks.refresh_pending_rollups, "apply_async", lambda args, countdown: later.append(
        (args, countdown)))
    monkeypatch.setattr(tasks.rollups, "refresh_rollups", lambda s, lo, hi: refreshed.append((s.pk, lo, hi)))
    cache.add(worker_request, 1)  # another pool process of this worker is refreshing
    tasks.refresh_pending_rollups.run([series.pk], org_a.pk)
    assert later == [(([series.pk], org_a.pk), tasks.ONE_REFRESH_RETRY_SECONDS)] and refreshed == []

    cache.delete(worker_request)  # it finished: the refresh runs, takes the span, and lets go
    tasks.refresh_pending_rollups.run([series.pk], org_a.pk)
    assert refreshed == [(series.pk, 1, 2)] and cache.get(worker_request) is None
    assert coalesce.claim(tasks.ROLLUPS, [series.pk]) == [series.pk]  # the flag was released
