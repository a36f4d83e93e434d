"""Kill-and-resume: a detection worker SIGKILLed mid-stream loses nothing and duplicates nothing."""

import time
from datetime import UTC, datetime

import numpy as np
import pytest

from accounts.tenancy import system_actor
from detection.models import Anomaly, DetectionCursor, Rule
from detection.pipeline import RANK_BITS
from detection.services.rules import backtest
from detection.tasks import sweep
from tests.factories import OrganizationFactory, SeriesFactory
from tests.workers import Worker, queued_for_real, wait_for, worker_env
from watchlists.services import ingest
from watchlists.store.writer import Points

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

N_POINTS, BATCH = 40_000, 4_000
START_US = 1_600_000_000 * 1_000_000


def _stream(org, series):
    rng = np.random.default_rng(7)
    values = rng.normal(10, 1, N_POINTS)
    values[rng.choice(N_POINTS, 60, replace=False)] += 8  # spikes
    ts = START_US + np.arange(N_POINTS, dtype=np.int64) * 10_000  # every 10 ms
    actor = system_actor(org.pk)
    for lo in range(0, N_POINTS, BATCH):
        ingest(actor=actor, batches=[(series, Points("metric", ts[lo:lo + BATCH], {"value": values[lo:lo + BATCH]}))])
    return int(ts[-1])


def _progress(series) -> int:
    cursor = DetectionCursor.objects.filter(series=series).first()
    return -1 if cursor is None else cursor.last_msg_id // RANK_BITS


def test_sigkilled_worker_resumes_without_gap_or_duplicate(clean_store):
    org = OrganizationFactory()
    series = SeriesFactory(organization=org, symbol="s", kind="metric", exchange="", bar_seconds=None)
    rule = Rule.objects.create(organization=org, name="r", series=series, window_size=200, step=100,
                               metrics="value > 15; value > percentile(value, 99); avg(value) > 10.2")
    env = worker_env(DETECTION_SNAPSHOT_INTERVAL=300)
    with queued_for_real():
        first = Worker("detect,ingest", env)
        try:
            last_us = _stream(org, series)
            wait_for(lambda: _progress(series) > START_US + (last_us - START_US) // 10, 90, message="progress")
            first.kill()
        finally:
            first.stop()
        at_kill = _progress(series)
        assert START_US < at_kill < last_us, "the worker must die mid-stream for this test to mean anything"
        partial = Anomaly.objects.filter(series=series).count()

        second = Worker("detect,ingest", env)
        try:
            assert sweep.delay().id  # what beat does every minute
            wait_for(lambda: _progress(series) == last_us, 120, message="the restarted worker to catch up")
            # Anomalies committed just before the kill may never have been announced: the sweep's
            # outbox pass publishes them once they are 5 s old.
            time.sleep(5.5)
            sweep.delay()
            wait_for(lambda: not Anomaly.objects.filter(series=series, published_at=None).exists(), 30,
                     message="every anomaly to be published")
        finally:
            second.stop()

    expected = backtest(actor=system_actor(org.pk), rule=rule, start=datetime(2020, 1, 1, tzinfo=UTC),
                        end=datetime(2021, 1, 1, tzinfo=UTC))
    want = sorted((a["ts"], a["metric_index"]) for a in expected["anomalies"])
    got = sorted((a.ts.isoformat(), a.metric_index) for a in Anomaly.objects.filter(series=series))
    assert expected["rows_processed"] == N_POINTS and not expected["truncated"]
    assert 0 < partial < len(want)
    assert got == want  # no gap, no duplicate: equal to an uninterrupted run
