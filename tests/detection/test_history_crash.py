"""Kill-and-resume for history runs: a worker SIGKILLed mid-run loses nothing and duplicates nothing."""

from datetime import UTC, datetime

import numpy as np
import pytest

from accounts.tenancy import system_actor
from detection.models import Anomaly, HistoryRun, Rule
from detection.services import history
from detection.services.rules import backtest
from detection.tasks import sweep
from tests.factories import OrganizationFactory, SeriesFactory
from tests.workers import Worker, queued_for_real, wait_for, worker_env
from watchlists.services import ingest
from watchlists.store.writer import Points

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

N_POINTS = 40_000
START_US = 1_600_000_000 * 1_000_000


def _store(org, series):
    rng = np.random.default_rng(11)
    values = rng.normal(10, 1, N_POINTS)
    values[rng.choice(N_POINTS, 60, replace=False)] += 8
    ts = START_US + np.arange(N_POINTS, dtype=np.int64) * 10_000
    for lo in range(0, N_POINTS, 10_000):  # stored and through live detection (eager here) before any rule
        ingest(actor=system_actor(org.pk), batches=[(series, Points("metric", ts[lo:lo + 10_000],
                                                                       {"value": values[lo:lo + 10_000]}))])


def _run(rule) -> HistoryRun:
    return HistoryRun.objects.get(rule=rule)


def test_sigkilled_history_worker_resumes_without_gap_or_duplicate(clean_store):
    org = OrganizationFactory()
    series = SeriesFactory(organization=org, symbol="s", kind="metric", exchange="", bar_seconds=None)
    _store(org, series)
    rule = Rule.objects.create(organization=org, name="r", series=series, window_size=200, step=100,
                               metrics="value > 15; value > percentile(value, 99); avg(value) > 10.2")
    # Small chunks (many commits to die between) and a short staleness, so the sweep hands the run on.
    env = worker_env(HISTORY_CHUNK_POINTS=300, HISTORY_STALE_SECONDS=2)
    with queued_for_real():
        first = Worker("train", env)
        try:
            (run,) = history.request_for_rule(actor=system_actor(org.pk), rule=rule)
            wait_for(lambda: _run(rule).points_done > N_POINTS // 10, 90, message="progress")
            first.kill()
        finally:
            first.stop()
        at_kill = _run(rule)
        assert 0 < at_kill.points_done < N_POINTS, "the worker must die mid-run for this test to mean anything"
        partial = Anomaly.objects.filter(series=series).count()

        second = Worker("train,detect", env)
        try:
            def handed_on():
                sweep.delay()  # what beat does every minute: finds the run whose heartbeat stopped
                return _run(rule).status == "succeeded"
            wait_for(handed_on, 120, interval=2.5, message="the sweep to hand the run to the new worker")
        finally:
            second.stop()

    expected = backtest(actor=system_actor(org.pk), rule=rule, start=datetime(2020, 1, 1, tzinfo=UTC),
                        end=datetime(2021, 1, 1, tzinfo=UTC))
    want = sorted((a["ts"], a["metric_index"]) for a in expected["anomalies"])
    got = sorted((a.ts.isoformat(), a.metric_index) for a in Anomaly.objects.filter(series=series))
    done = _run(rule)
    assert expected["rows_processed"] == N_POINTS and not expected["truncated"]
    assert 0 < partial < len(want)
    assert done.points_done == N_POINTS  # each point counted once: the killed chunk was rolled back
    assert got == want  # no gap, no duplicate: equal to an uninterrupted run
    assert done.anomalies_found == len(want)
