"""Points committed behind the detection cursor (issue 22, case 11): batches commit in any order
(concurrent clients, retries, backfills), and detection still judges every stored point once, with
the state it would have had: anomalies equal a run over the whole history, each stored once."""

import time
from datetime import UTC, datetime

import numpy as np
import pytest

from accounts.models import Role
from accounts.services import create_api_key
from accounts.tenancy import actor_for_user, system_actor
from detection import pipeline
from detection.models import Anomaly, DetectionCursor, Rule
from detection.services.rules import backtest
from tests.benchmarks import late_writers
from tests.factories import MembershipFactory, SeriesFactory, UserFactory
from tests.reliability.private_services import AppServer, app_env
from tests.workers import wait_for, worker_env
from watchlists import services
from watchlists.models import PendingWork
from watchlists.store.writer import Points

START_US = 1_600_000_000 * 1_000_000
N_POINTS, BATCH = 3_000, 100
RULES = {"row": ("value > 15", None, None), "prev": ("value - prev(value) > 6", None, None),
         "window": ("max(value) > 15", 200, 100)}  # windows of 200 ms every 100 ms


def _stream(seed: int):
    """Points every 10 ms near 10, spikes (+8) never on neighbouring points."""
    rng = np.random.default_rng(seed)
    values = rng.normal(10, 0.5, N_POINTS)
    values[np.arange(5, N_POINTS, 37)] += 8
    return START_US + np.arange(N_POINTS, dtype=np.int64) * 10_000, values


def _batches(ts, values, seed: int):
    """Batches overlapping in pairs (every other point of 2 * BATCH), shuffled in groups of 6, a few
    sent twice: the order concurrent clients and retries commit them in. The first goes first."""
    rng = np.random.default_rng(seed)
    out = []
    for lo in range(0, N_POINTS, 2 * BATCH):
        for half in (0, 1):
            idx = np.arange(lo + half, min(lo + 2 * BATCH, N_POINTS), 2)
            out.append((ts[idx], values[idx]))
    first, rest = out[0], out[1:]
    groups = [rest[i:i + 6] for i in range(0, len(rest), 6)]
    for group in groups:
        rng.shuffle(group)
    rest = [b for group in groups for b in group]
    retried = [rest[i] for i in rng.choice(len(rest), 4, replace=False)]
    late = rest[3]  # and one batch held back until the very end
    return [first, *(b for b in rest if b is not late), *retried, late]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_batches_committed_out_of_order_are_detected_once_as_if_in_order(org_a, seed):
    series = SeriesFactory(organization=org_a, symbol="late", kind="metric", exchange="", bar_seconds=None)
    rules = {name: Rule.objects.create(organization=org_a, name=name, series=series, metrics=metrics,
                                       window_size=size, step=step)
             for name, (metrics, size, step) in RULES.items()}
    actor = system_actor(org_a.pk)
    ts, values = _stream(seed)
    for batch_ts, batch_values in _batches(ts, values, seed):
        # Bars and metrics are unique by time: a resent batch replaces its points with themselves.
        services.ingest(actor=actor, batches=[(series, Points("metric", batch_ts, {"value": batch_values}))])
        pipeline.run_many([series.pk], org_a.pk)  # what the batch's queued run does once it commits
    assert not PendingWork.objects.filter(purpose="detect").exists()
    assert DetectionCursor.objects.get(series=series).last_msg_id // pipeline.RANK_BITS == ts[-1]
    for name, rule in rules.items():
        expected = backtest(actor=actor, rule=rule, start=datetime(2020, 1, 1, tzinfo=UTC),
                            end=datetime(2021, 1, 1, tzinfo=UTC))
        want = sorted((a["ts"], a["metric_index"]) for a in expected["anomalies"])
        got = sorted((a.ts.isoformat(), a.metric_index) for a in Anomaly.objects.filter(rule=rule))
        assert want and got == want, name


def test_a_late_batch_rewinds_only_a_series_something_watches(org_a):
    watched = SeriesFactory(organization=org_a, symbol="w", kind="metric", exchange="", bar_seconds=None)
    idle = SeriesFactory(organization=org_a, symbol="i", kind="metric", exchange="", bar_seconds=None)
    Rule.objects.create(organization=org_a, name="r", series=watched, metrics="value > 15")
    actor = system_actor(org_a.pk)

    def send(start: int, values: list[float]):
        ts = START_US + (start + np.arange(len(values), dtype=np.int64)) * 1000
        services.ingest(actor=actor, batches=[(s, Points("metric", ts, {"value": np.array(values)}))
                                              for s in (watched, idle)])
        pipeline.run_many([watched.pk, idle.pk], org_a.pk)

    send(10, [1, 2, 3])
    send(0, [1, 20, 3])  # committed after, dated before: behind both cursors
    assert list(Anomaly.objects.values_list("ts", flat=True)) == [datetime.fromtimestamp(
        (START_US + 1000) / 1e6, tz=UTC)]
    cursors = {c.series_id: c for c in DetectionCursor.objects.all()}
    assert cursors[watched.pk].replay_from_us == START_US and cursors[idle.pk].replay_from_us is None
    assert cursors[watched.pk].last_msg_id // pipeline.RANK_BITS == START_US + 12_000
    assert not PendingWork.objects.filter(purpose="detect").exists()


def test_the_sweep_finds_spans_no_run_took(org_a):
    series = SeriesFactory(organization=org_a, symbol="s", kind="metric", exchange="", bar_seconds=None)
    services.ingest(actor=system_actor(org_a.pk),
                    batches=[(series, Points("metric", np.array([START_US]), {"value": np.array([1.0])}))])
    assert pipeline.stale_series() == [(series.pk, org_a.pk)]  # no rule, but spans to take
    pipeline.run_series(series.pk, org_a.pk)
    assert pipeline.stale_series() == [] and not PendingWork.objects.filter(purpose="detect").exists()


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_through_the_real_server_store_every_planted_anomaly_once(org_a, clean_store):
    """4 writers at 2,000 ticks/s to one series through the Procfile's processes (web, real Celery
    workers): overlapping halves, shuffled groups, resends, and batches first sent 1.5 s late."""
    user = MembershipFactory(organization=org_a, user=UserFactory(), role=Role.OWNER).user
    _, key = create_api_key(actor=actor_for_user(user, org_a.pk), name="late writers", scope="ingest")
    series = SeriesFactory(organization=org_a, symbol="LATE", kind="trade", exchange="")
    row = Rule.objects.create(organization=org_a, name="spike", series=series, metrics=late_writers.ROW_RULE)
    window = Rule.objects.create(organization=org_a, name="window", series=series, metrics=late_writers.WINDOW_RULE,
                                 window_size=late_writers.WINDOW_MS, step=late_writers.WINDOW_MS)
    base_ms = (int(time.time()) - 600) * 1000
    schedule = late_writers.plan(20, base_ms)
    env = worker_env()
    server = AppServer(app_env(env["DATABASE_URL"], env["REDIS_URL"]), workers="ingest,detect:2")
    try:
        stats = late_writers.send(server.base, key, series.pk, schedule)
        last_us = int(schedule.last_ms * 1000)

        def caught_up():
            cursor = DetectionCursor.objects.filter(series=series).first()
            return (cursor is not None and cursor.last_msg_id // pipeline.RANK_BITS >= last_us
                    and not PendingWork.objects.filter(purpose="detect", series=series).exists())

        wait_for(caught_up, 120, message="detection to take every span")
    finally:
        server.stop()
    got = {round(a.ts.timestamp() * 1000) for a in Anomaly.objects.filter(rule=row)}
    windows = {round(a.ts.timestamp() * 1000) for a in Anomaly.objects.filter(rule=window)}
    assert stats["duplicates"] == schedule.resent_posts  # every resend recognised, nothing stored twice
    assert Anomaly.objects.filter(rule=row).count() == len(got)  # the unique key makes this hold by itself
    assert sorted(schedule.spikes - got) == [] and sorted(got - schedule.spikes) == []
    assert sorted(schedule.window_ends - windows) == [] and sorted(windows - schedule.window_ends) == []


def test_points_older_than_a_window_rules_first_point_get_their_windows(org_a):
    series = SeriesFactory(organization=org_a, symbol="old", kind="metric", exchange="", bar_seconds=None)
    rule = Rule.objects.create(organization=org_a, name="w", series=series, metrics="max(value) > 15",
                               window_size=300, step=300)  # aligned to 500 ms: the grid repeats every 1.5 s
    actor = system_actor(org_a.pk)

    def send(start_ms: int, values: list[float]):
        ts = START_US + (start_ms + 100 * np.arange(len(values), dtype=np.int64)) * 1000
        services.ingest(actor=actor, batches=[(series, Points("metric", ts, {"value": np.array(values, float)}))])
        pipeline.run_many([series.pk], org_a.pk)

    # The rule's first point: its windows end at 9,300 + k * 300 ms, on the grid a run over the
    # whole history (first point at 0) has too.
    send(9_000, [1] * 30)
    send(0, [1, 1, 20, 1, 1])  # a backfill before it, with a spike at 200 ms
    send(12_000, [1] * 5)
    expected = backtest(actor=actor, rule=rule, start=datetime(2020, 1, 1, tzinfo=UTC),
                        end=datetime(2021, 1, 1, tzinfo=UTC))
    want = sorted(a["ts"] for a in expected["anomalies"])
    got = sorted(a.ts.isoformat() for a in Anomaly.objects.filter(rule=rule))
    assert len(want) == 1 and got == want
