"""The detection pass itself: one round trip to load every kind of series, kept engines, message ids."""

import threading
import time

import numpy as np
import psycopg
import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.tenancy import system_actor
from detection import pipeline
from detection.models import Anomaly, DetectionCursor, Rule, RuleState
from tests.detection.conftest import EXAMPLE_EXPECTED, EXAMPLE_POINTS
from tests.factories import SeriesFactory, WatchlistFactory
from watchlists import services
from watchlists.models import WatchlistItem
from watchlists.signals import batch_stored
from watchlists.store.writer import VALUE_COLUMNS, Points

pytestmark = pytest.mark.django_db
T0_US = 1_700_000_000_000_000


def _points(kind: str, start: int, values: list[float]) -> Points:
    ts = T0_US + (start + np.arange(len(values), dtype=np.int64)) * 1000
    columns = {c: np.full(len(values), 1.0) for c in VALUE_COLUMNS[kind]}
    columns[{"trade": "price", "bar": "close", "metric": "value"}[kind]] = np.array(values, dtype=float)
    return Points(kind, ts, columns, np.array([None] * len(values), dtype=object) if kind == "trade" else None)


@pytest.fixture
def three_kinds(org_a):
    """A trade, a bar and a metric series, one rule each (the metric's through a watchlist)."""
    trade = SeriesFactory(organization=org_a, symbol="T", kind="trade", exchange="")
    bar = SeriesFactory(organization=org_a, symbol="B", kind="bar")
    metric = SeriesFactory(organization=org_a, symbol="M", kind="metric", exchange="", bar_seconds=None)
    watchlist = WatchlistFactory(organization=org_a)
    WatchlistItem.objects.create(organization=org_a, watchlist=watchlist, series=metric)
    Rule.objects.create(organization=org_a, name="t", metrics="price > 200", series=trade)
    Rule.objects.create(organization=org_a, name="b", metrics="close > 200", series=bar)
    Rule.objects.create(organization=org_a, name="m", metrics="value > 200", watchlist=watchlist)
    return trade, bar, metric


def _ingest(org, series_values: dict, start: int) -> None:
    services.ingest(actor=system_actor(org.pk), batches=[(s, _points(s.kind, start, v))
                                                         for s, v in series_values.items()])


@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "inline"])
def test_one_pass_reads_every_kind_and_creates_missing_cursors(org_a, org_b, three_kinds, prepared, settings):
    settings.DETECTION_PREPARED_STATEMENTS = prepared  # False: statements sent as text (PgBouncer)
    trade, bar, metric = three_kinds
    foreign = SeriesFactory(organization=org_b, symbol="X", kind="metric", exchange="", bar_seconds=None)
    DetectionCursor.objects.create(organization=org_a, series=trade)  # one cursor exists, two do not
    _ingest(org_a, {trade: [100, 500, 100], bar: [100, 100, 300], metric: [400, 100, 100]}, 0)
    ids = [trade.pk, bar.pk, metric.pk, foreign.pk]
    assert pipeline.run_many(ids, org_a.pk) == 3
    fired = {(a.series_id, int(a.ts.timestamp() * 1e6)) for a in Anomaly.objects.all()}
    assert fired == {(trade.pk, T0_US + 1000), (bar.pk, T0_US + 2000), (metric.pk, T0_US)}
    last = (T0_US + 2000) * pipeline.RANK_BITS
    assert dict(DetectionCursor.objects.values_list("series_id", "last_msg_id")) == {
        trade.pk: last, bar.pk: last, metric.pk: last}  # none for another organization's series
    assert sorted(RuleState.objects.values_list("stats__numRows", flat=True)) == [3, 3, 3]

    _ingest(org_a, {trade: [100, 600], metric: [100, 100]}, 3)
    assert pipeline.run_many(ids, org_a.pk) == 1
    assert pipeline.run_many(ids, org_a.pk) == 0  # nothing new
    assert sorted(RuleState.objects.values_list("stats__numRows", flat=True)) == [3, 5, 5]


def test_the_one_round_trip_load_equals_the_orm_load(org_a, three_kinds):
    trade, bar, metric = three_kinds
    _ingest(org_a, {trade: [100, 500], bar: [100, 300], metric: [400]}, 0)
    pipeline.run_many([trade.pk], org_a.pk)
    _ingest(org_a, {trade: [100, 500], bar: [100, 300], metric: [400]}, 5)
    ids = [trade.pk, bar.pk, metric.pk]
    with transaction.atomic():
        fast = pipeline._load(ids, org_a.pk, 100)  # creates the two missing cursors
        slow = pipeline._load_orm(ids, org_a.pk, 100)
    assert [s.pk for s in fast[0]] == [s.pk for s in slow[0]] == sorted(ids)
    assert {k: (c.last_msg_id, c.has_detector) for k, c in fast[1].items()} == {
        k: (c.last_msg_id, c.has_detector) for k, c in slow[1].items()}
    for series_id in ids:
        (fast_ts, fast_cols), (slow_ts, slow_cols) = fast[2][series_id], slow[2][series_id]
        np.testing.assert_array_equal(fast_ts, slow_ts)
        assert fast_cols.keys() == slow_cols.keys()
        for column in fast_cols:
            np.testing.assert_array_equal(fast_cols[column], slow_cols[column])
    assert len(fast[2][trade.pk][0]) == 2 and len(fast[2][bar.pk][0]) == 4  # after the trade cursor only
    assert {k: [r.pk for r in v] for k, v in fast[3].items()} == {k: [r.pk for r in v] for k, v in slow[3].items()}
    assert {k: (s.pk, s.snapshot_msg_id) for k, s in fast[4].items()} == {
        k: (s.pk, s.snapshot_msg_id) for k, s in slow[4].items()}


def test_a_kept_engine_continues_only_while_the_stored_state_is_its_snapshot(example_rule, sensor, ingest):
    ingest(sensor, EXAMPLE_POINTS[:3])
    kept = dict(pipeline._ENGINES.items)
    assert kept
    pipeline._ENGINES.clear()  # as if another worker process ran the next chunk, from the stored state
    ingest(sensor, EXAMPLE_POINTS[3:6])
    pipeline._ENGINES.clear()
    for key, (snapshot, engine) in kept.items():  # this process still holds the first chunk's engine: stale
        pipeline._ENGINES.keep(key, snapshot, engine)
    ingest(sensor, EXAMPLE_POINTS[6:])
    got = sorted((a.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), a.metric_index, a.text) for a in Anomaly.objects.all())
    assert got == EXAMPLE_EXPECTED
    assert RuleState.objects.get(series=sensor).stats["numRows"] == 10


def test_a_kept_engine_is_not_restored_from_its_own_snapshot(example_rule, sensor, ingest, monkeypatch):
    ingest(sensor, EXAMPLE_POINTS[:3])

    def no_restore(*args, **kwargs):
        raise AssertionError("restored although this process holds the engine of the stored snapshot")

    monkeypatch.setattr(pipeline.RuleEngine, "restore", no_restore)
    ingest(sensor, EXAMPLE_POINTS[3:])
    assert Anomaly.objects.count() == len(EXAMPLE_EXPECTED)


def test_statements_are_prepared_again_in_a_session_that_lost_them(org_a, three_kinds):
    trade, _, _ = three_kinds
    _ingest(org_a, {trade: [500]}, 0)
    pipeline.run_many([trade.pk], org_a.pk)
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ah_detect_lock")
    pipeline._SQL.sessions.clear()  # e.g. a new connection: prepare what is missing, keep the rest
    _ingest(org_a, {trade: [500]}, 1)
    assert pipeline.run_many([trade.pk], org_a.pk) == 1


@pytest.mark.parametrize("ts", [[5], [1, 2, 3], [1, 1, 1, 2, 3, 3], [7] * 1500, list(range(0, 100, 3))])
def test_message_ids_rank_equal_timestamps(ts):
    ts = np.array(ts, dtype=np.int64)
    expected = [t * pipeline.RANK_BITS + min(list(ts[:i]).count(t), pipeline.RANK_BITS - 1) for i, t in enumerate(ts)]
    assert pipeline.message_ids(ts).tolist() == expected


@pytest.mark.django_db(transaction=True)
def test_a_pass_waiting_on_a_cursor_lock_reads_what_the_holder_committed(org_a, three_kinds, clean_store,
                                                                         monkeypatch):
    """The lock and the reads are statements of one query string: each takes a new snapshot, so a
    pass that waited for the lock sees the points (and states) committed by the one that held it."""
    trade, _, _ = three_kinds
    monkeypatch.setattr(batch_stored, "receivers", [])  # nothing runs detection but this test
    _ingest(org_a, {trade: [100, 100]}, 0)
    pipeline.run_many([trade.pk], org_a.pk)
    locked, done = threading.Event(), []

    def holder():
        try:
            with transaction.atomic():
                DetectionCursor.objects.select_for_update().get(series=trade)
                locked.set()
                time.sleep(0.5)  # the pass below is waiting for the lock by now
                _ingest(org_a, {trade: [100, 700]}, 2)
        finally:
            connection.close()
            done.append(True)

    thread = threading.Thread(target=holder)
    thread.start()
    assert locked.wait(10)
    assert pipeline.run_many([trade.pk], org_a.pk) == 1
    thread.join(10)
    assert done and Anomaly.objects.get().ts.timestamp() * 1e6 == T0_US + 3000


@pytest.mark.django_db(transaction=True)
def test_an_outermost_pass_commits_in_its_last_round_trip(org_a, three_kinds, clean_store, monkeypatch):
    trade, _, _ = three_kinds
    monkeypatch.setattr(batch_stored, "receivers", [])
    _ingest(org_a, {trade: [100, 700]}, 0)
    with CaptureQueriesContext(connection) as queries:
        assert pipeline.run_many([trade.pk], org_a.pk) == 1
    assert sum(q["sql"].endswith("; COMMIT") for q in queries.captured_queries) == 1
    assert connection.connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert Anomaly.objects.get().published_at is not None  # the on_commit hook ran: published
    _ingest(org_a, {trade: [100]}, 2)
    assert pipeline.run_many([trade.pk], org_a.pk) == 0  # the same without anomalies
    assert DetectionCursor.objects.get(series=trade).last_msg_id == (T0_US + 2000) * pipeline.RANK_BITS


def test_kept_engines_stay_within_their_byte_budget():
    kept = pipeline._KeptEngines(budget=10)
    for i in range(4):
        kept.keep((i, 1), b"x" * 4, engine=None)
    assert list(kept.items) == [(2, 1), (3, 1)] and kept.size == 8  # the least recent went
    assert kept.take((2, 1)) == (b"xxxx", None) and kept.take((2, 1)) is None and kept.size == 4


def test_the_sweep_finds_series_behind_their_cursor_with_a_rule_or_a_ready_detector(org_a):
    from django.utils import timezone

    from detection.models import DetectorStatus
    from tests.factories import DetectorFactory

    now = timezone.now()
    ruled, learned, untrained, idle = (SeriesFactory(organization=org_a, last_point_at=now) for _ in range(4))
    Rule.objects.create(organization=org_a, name="r", metrics="value > 1", series=ruled, enabled=True)
    DetectorFactory(organization=org_a, series=learned, status=DetectorStatus.READY)
    DetectorFactory(organization=org_a, series=untrained)  # nothing to run yet
    stale = {series_id for series_id, _ in pipeline.stale_series()}
    assert {ruled.pk, learned.pk} <= stale and not {untrained.pk, idle.pk} & stale


def test_the_sweeps_sql_agrees_with_the_orm_on_every_case(org_a):
    from datetime import timedelta

    from django.utils import timezone

    from detection.models import DetectionCursor
    from watchlists.models import Watchlist, WatchlistItem
    from watchlists.store.timeconv import to_us

    now = timezone.now()
    series = {name: SeriesFactory(organization=org_a, last_point_at=now) for name in (
        "no_cursor", "behind", "caught_up", "one_us_behind", "new_cursor", "watchlist_rule", "disabled_rule")}
    series["no_points"] = SeriesFactory(organization=org_a, last_point_at=None)
    for name, s in series.items():
        if name != "disabled_rule" and name != "watchlist_rule":
            Rule.objects.create(organization=org_a, name=name, metrics="value > 1", series=s, enabled=True)
    Rule.objects.create(organization=org_a, name="off", metrics="value > 1", series=series["disabled_rule"],
                        enabled=False)
    watchlist = Watchlist.objects.create(organization=org_a, name="w")
    WatchlistItem.objects.create(organization=org_a, watchlist=watchlist, series=series["watchlist_rule"])
    Rule.objects.create(organization=org_a, name="w", metrics="value > 1", watchlist=watchlist, enabled=True)
    last_us = to_us(now)
    for name, processed_us in (("behind", to_us(now - timedelta(seconds=5))), ("caught_up", last_us),
                               ("one_us_behind", last_us - 1), ("watchlist_rule", last_us - 1)):
        DetectionCursor.objects.create(organization=org_a, series=series[name],
                                       last_msg_id=processed_us * pipeline.RANK_BITS + 3)
    DetectionCursor.objects.create(organization=org_a, series=series["new_cursor"])  # last_msg_id -1

    mine = {s.pk for s in series.values()}
    sql = {(sid, org) for sid, org in pipeline.stale_series() if sid in mine}
    assert sql == {(sid, org) for sid, org in pipeline._stale_series_orm() if sid in mine}
    assert {sid for sid, _ in sql} == {series[n].pk for n in ("no_cursor", "behind", "one_us_behind", "new_cursor",
                                                              "watchlist_rule")}
