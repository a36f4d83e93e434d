"""The detection pass itself: a chunk of every kind of series, kept engines, message ids, the sweep.

One path on both engines: with DATABASE_URL=sqlite:///... these run on SQLite too (embedded mode)."""

import threading
import time

import numpy as np
import pytest
from django.db import connection, transaction

from accounts.tenancy import system_actor
from detection import pipeline
from detection.models import Anomaly, DetectionCursor, Rule, RuleState
from detection.pipeline import engines
from detection.pipeline.claim import claim
from detection.pipeline.write import insert_new
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


def test_one_pass_reads_every_kind_and_creates_missing_cursors(org_a, org_b, three_kinds):
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


def test_a_claim_locks_and_loads_what_follows_each_cursor(org_a, org_b, three_kinds):
    trade, bar, metric = three_kinds
    foreign = SeriesFactory(organization=org_b, symbol="X", kind="metric", exchange="", bar_seconds=None)
    _ingest(org_a, {trade: [100, 500], bar: [100, 300], metric: [400]}, 0)
    pipeline.run_many([trade.pk], org_a.pk)
    _ingest(org_a, {trade: [100, 500], bar: [100, 300], metric: [400]}, 5)
    ids = [trade.pk, bar.pk, metric.pk, foreign.pk]
    with transaction.atomic():
        chunk = claim(ids, org_a.pk, 100)  # creates the two missing cursors, none for another organization
    assert [s.pk for s in chunk.series] == sorted(ids[:3]) and sorted(chunk.cursors) == sorted(ids[:3])
    assert not any(c.has_detector for c in chunk.cursors.values())
    assert len(chunk.points[trade.pk][0]) == 2 and len(chunk.points[bar.pk][0]) == 4  # after the trade cursor only
    assert chunk.points[trade.pk][1]["price"].tolist() == [100, 500]
    assert {sid: [r.name for r in rules] for sid, rules in chunk.rules.items()} == {
        trade.pk: ["t"], bar.pk: ["b"], metric.pk: ["m"]}  # the metric's through its watchlist
    assert {k: st.pk is None for k, st in chunk.states.items()} == {
        (chunk.rules[trade.pk][0].pk, trade.pk): False, (chunk.rules[bar.pk][0].pk, bar.pk): True,
        (chunk.rules[metric.pk][0].pk, metric.pk): True}
    assert set(chunk.late) == {trade.pk, bar.pk, metric.pk}  # the spans of the second batch, taken


def test_insert_new_returns_only_the_anomalies_it_stored(org_a, three_kinds):
    from datetime import UTC, datetime

    trade, _, _ = three_kinds
    rule = Rule.objects.get(series=trade)

    def anomaly(second):
        return Anomaly(organization_id=org_a.pk, series=trade, rule=rule, source=f"rule:{rule.pk}",
                       ts=datetime.fromtimestamp(T0_US / 1e6 + second, tz=UTC), metric_index=0, text="x")

    before = insert_new([anomaly(1)])
    assert [a.pk for a in before] == [Anomaly.objects.get().pk]
    again = [anomaly(1), anomaly(2), anomaly(2)]  # stored before, new, a twin of the new one
    created = insert_new(again)
    assert [a.ts.second for a in created] == [again[1].ts.second] and created[0] is again[1]
    assert created[0].pk == Anomaly.objects.get(ts=again[1].ts).pk and again[0].pk is None
    assert Anomaly.objects.count() == 2


def test_a_kept_engine_continues_only_while_the_stored_state_is_its_snapshot(example_rule, sensor, ingest):
    ingest(sensor, EXAMPLE_POINTS[:3])
    kept = dict(engines.KEPT.items)
    assert kept
    engines.KEPT.clear()  # as if another worker process ran the next chunk, from the stored state
    ingest(sensor, EXAMPLE_POINTS[3:6])
    engines.KEPT.clear()
    for key, (snapshot, engine) in kept.items():  # this process still holds the first chunk's engine: stale
        engines.KEPT.keep(key, snapshot, engine)
    ingest(sensor, EXAMPLE_POINTS[6:])
    got = sorted((a.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), a.metric_index, a.text) for a in Anomaly.objects.all())
    assert got == EXAMPLE_EXPECTED
    assert RuleState.objects.get(series=sensor).stats["numRows"] == 10


def test_a_kept_engine_is_not_restored_from_its_own_snapshot(example_rule, sensor, ingest, monkeypatch):
    ingest(sensor, EXAMPLE_POINTS[:3])

    def no_restore(*args, **kwargs):
        raise AssertionError("restored although this process holds the engine of the stored snapshot")

    monkeypatch.setattr(engines.RuleEngine, "restore", no_restore)
    ingest(sensor, EXAMPLE_POINTS[3:])
    assert Anomaly.objects.count() == len(EXAMPLE_EXPECTED)


@pytest.mark.parametrize("ts", [[5], [1, 2, 3], [1, 1, 1, 2, 3, 3], [7] * 1500, list(range(0, 100, 3))])
def test_message_ids_rank_equal_timestamps(ts):
    ts = np.array(ts, dtype=np.int64)
    expected = [t * pipeline.RANK_BITS + min(list(ts[:i]).count(t), pipeline.RANK_BITS - 1) for i, t in enumerate(ts)]
    assert pipeline.message_ids(ts).tolist() == expected


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite has no row locks: one writer at a time")
@pytest.mark.django_db(transaction=True)
def test_a_pass_waiting_on_a_cursor_lock_reads_what_the_holder_committed(org_a, three_kinds, clean_store,
                                                                         monkeypatch):
    """Each statement after the lock takes a new snapshot (READ COMMITTED), so a pass that waited for
    the lock sees the points (and states) committed by the one that held it."""
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
def test_a_pass_commits_then_publishes(org_a, three_kinds, clean_store, monkeypatch):
    trade, _, _ = three_kinds
    monkeypatch.setattr(batch_stored, "receivers", [])
    _ingest(org_a, {trade: [100, 700]}, 0)
    assert pipeline.run_many([trade.pk], org_a.pk) == 1
    assert not connection.in_atomic_block
    assert Anomaly.objects.get().published_at is not None  # the on_commit hook ran: published
    _ingest(org_a, {trade: [100]}, 2)
    assert pipeline.run_many([trade.pk], org_a.pk) == 0  # the same without anomalies
    assert DetectionCursor.objects.get(series=trade).last_msg_id == (T0_US + 2000) * pipeline.RANK_BITS


def test_kept_engines_stay_within_their_byte_budget():
    kept = engines.KeptEngines(budget=10)
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


def test_the_sweep_on_every_case(org_a):
    from datetime import timedelta

    from django.utils import timezone

    from detection.models import DetectionCursor
    from watchlists.models import Watchlist, WatchlistItem
    from watchlists.store.timeconv import from_us, to_us

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
        DetectionCursor.objects.create(organization=org_a, series=series[name], read_to=from_us(processed_us),
                                       last_msg_id=processed_us * pipeline.RANK_BITS + 3)
    DetectionCursor.objects.create(organization=org_a, series=series["new_cursor"])  # last_msg_id -1

    mine = {s.pk for s in series.values()}
    stale = {(sid, org) for sid, org in pipeline.stale_series() if sid in mine}
    assert {org for _, org in stale} == {org_a.pk}
    assert {sid for sid, _ in stale} == {series[n].pk for n in ("no_cursor", "behind", "one_us_behind", "new_cursor",
                                                              "watchlist_rule")}
