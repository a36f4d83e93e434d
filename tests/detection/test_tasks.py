"""detection.tasks.run_pending works the detection rows ingest queued (watchlists.pending): a few
chunks per task, the rest queued again from where the cursor stands (no replay) behind a new
wake-up; a run that fails leaves its rows queued."""

import numpy as np
import pytest
from django.test import override_settings

from accounts.tenancy import system_actor
from detection import tasks
from detection.models import Anomaly, DetectionCursor, Rule
from detection.rules import RuleEngine
from tests.factories import SeriesFactory
from watchlists import pending, services
from watchlists.models import PendingWork
from watchlists.store.writer import Points

pytestmark = pytest.mark.django_db
START_US = 1_600_000_000 * 1_000_000
DETECT = PendingWork.objects.filter(purpose=pending.DETECT)


def _stored(org, n: int):
    series = SeriesFactory(organization=org, symbol="s", kind="metric", exchange="", bar_seconds=None)
    Rule.objects.create(organization=org, name="r", metrics="value > 5", series=series)
    ts = START_US + np.arange(n, dtype=np.int64) * 1000
    services.ingest(actor=system_actor(org.pk), batches=[(series, Points("metric", ts, {"value": np.arange(n) * 1.0}))])
    return series


@override_settings(DETECTION_SNAPSHOT_INTERVAL=10, DETECTION_CHUNKS_PER_TASK=1)
def test_a_run_takes_its_chunks_and_queues_the_rest_behind_a_new_wake_up(org_a, monkeypatch):
    series = _stored(org_a, 35)
    queued = []
    monkeypatch.setattr(tasks.run_pending, "delay", queued.append)
    assert pending.waiting(pending.DETECT, org_a.pk) == [series.pk]
    assert tasks.run_pending(org_a.pk) == 4  # points 0..9: 6..9 fire
    assert queued == [org_a.pk]
    # The rest is queued from just after the cursor (point 9): more to read, nothing late.
    assert list(DETECT.values_list("series_id", "start_us")) == [(series.pk, START_US + 9_001)]
    while queued:
        tasks.run_pending(queued.pop())
    assert Anomaly.objects.filter(series=series).count() == 29 and not DETECT.exists()
    assert DetectionCursor.objects.get(series=series).replay_from_us is None


def test_a_run_that_fails_leaves_its_rows_queued(org_a, monkeypatch):
    series = _stored(org_a, 5)

    def fail(self, *args, **kwargs):
        raise RuntimeError("the worker's pass failed mid-chunk")

    monkeypatch.setattr(RuleEngine, "process", fail)
    with pytest.raises(RuntimeError):
        tasks.run_pending(org_a.pk)
    assert list(DETECT.values_list("series_id", "start_us", "end_us")) == [(series.pk, START_US, START_US + 4000)]
    monkeypatch.undo()
    assert tasks.run_pending(org_a.pk) == 0 and not DETECT.exists()
    assert DetectionCursor.objects.get(series=series).last_msg_id >= 0
