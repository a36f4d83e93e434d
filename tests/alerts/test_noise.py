"""Noise control in live dispatch: grouping, watchlist incidents, cooldown, quiet hours, flapping."""

from datetime import UTC, datetime, time, timedelta

import pytest

from alerts.models import Notification, QuietMode, Target
from alerts.services.dispatch import resolve_quiet_incidents
from alerts.services.render import payload_for
from tests.factories import SeriesFactory, WatchlistFactory
from watchlists.models import WatchlistItem

from .factories import subscription_for
from .helpers import anomalies, dispatch, every, messages

pytestmark = pytest.mark.django_db
# Tuesday 2024-06-04, 10:31 New York (EDT) = 14:31 UTC, inside the NYSE session.
T0 = datetime(2024, 6, 4, 14, 31, tzinfo=UTC)


@pytest.fixture
def series(org_a):
    return SeriesFactory(organization=org_a, symbol="SPY")


def test_a_burst_of_500_anomalies_gives_one_notification_per_group_window(org_a, alice, series):
    sub = subscription_for(org_a, alice, target=Target.SERIES, series=series, group_window_seconds=60)
    rows = anomalies(org_a, series, every(T0.replace(minute=30), 0.6, 500))  # 5 minutes: 5 aligned windows
    for lo in range(0, 500, 50):  # ten dispatches, as the pipeline's chunks would send them
        dispatch(org_a, rows[lo:lo + 50])
    keys = messages(sub)
    assert len(keys) == 5
    ids = [i for n in Notification.objects.filter(subscription=sub) for i in n.anomaly_ids]
    assert sorted(ids) == sorted(a.pk for a in rows)
    assert dispatch(org_a, rows) == 0  # already claimed: a re-run writes nothing


def test_14_symbols_of_a_watchlist_in_one_minute_are_one_incident(org_a, alice):
    wl = WatchlistFactory(organization=org_a, name="Tech 30")
    members = [SeriesFactory(organization=org_a, symbol=f"S{i:02d}") for i in range(30)]
    for s in members:
        WatchlistItem.objects.create(organization=org_a, watchlist=wl, series=s)
    sub = subscription_for(org_a, alice, target=Target.WATCHLIST, watchlist=wl)
    for i, s in enumerate(members[:14]):  # one signal per series, as the pipeline sends them
        dispatch(org_a, anomalies(org_a, s, [T0 + timedelta(seconds=i)]))
    notes = Notification.objects.filter(subscription=sub)
    assert notes.count() == 1
    payload = payload_for(notes.get())
    assert payload["type"] == "incident.opened"
    assert payload["data"]["summary"] == "14 of 30 symbols moved at 10:31 (exchange time, America/New_York)"


def test_cooldown_per_series(org_a, alice, series):
    other = SeriesFactory(organization=org_a)
    sub = subscription_for(org_a, alice, cooldown_seconds=600, resolve_after_seconds=3600)
    dispatch(org_a, anomalies(org_a, series, [T0, T0 + timedelta(minutes=5), T0 + timedelta(minutes=11)]))
    dispatch(org_a, anomalies(org_a, other, [T0 + timedelta(minutes=1)]))  # its own cooldown
    assert len(messages(sub)) == 3


@pytest.mark.parametrize("ts, zone, held_until", [
    # The night New York springs forward: 07:00 local is 11:00 UTC (EDT), the night before 12:00 (EST).
    (datetime(2024, 3, 10, 5, 0, tzinfo=UTC), "America/New_York", datetime(2024, 3, 10, 11, 0, tzinfo=UTC)),
    (datetime(2024, 3, 9, 5, 0, tzinfo=UTC), "America/New_York", datetime(2024, 3, 9, 12, 0, tzinfo=UTC)),
    # London falls back on 2024-10-27: 07:00 GMT = 07:00 UTC; the day before 07:00 BST = 06:00 UTC.
    (datetime(2024, 10, 27, 1, 30, tzinfo=UTC), "Europe/London", datetime(2024, 10, 27, 7, 0, tzinfo=UTC)),
    (datetime(2024, 10, 26, 1, 30, tzinfo=UTC), "Europe/London", datetime(2024, 10, 26, 6, 0, tzinfo=UTC)),
])
def test_quiet_hours_hold_until_local_morning_across_dst(org_a, alice, series, ts, zone, held_until):
    alice.time_zone = zone
    alice.save()
    sub = subscription_for(org_a, alice, quiet_start=time(22), quiet_end=time(7), quiet_mode=QuietMode.HOLD)
    dispatch(org_a, anomalies(org_a, series, [ts, ts + timedelta(minutes=30)]), now=ts)
    note = Notification.objects.get(subscription=sub)  # both anomalies held in one message
    assert note.due_at == held_until
    assert len(note.anomaly_ids) == 2


def test_quiet_hours_follow_each_users_time_zone(org_a, alice, bob, series):
    bob.time_zone = "Asia/Tokyo"
    bob.save()
    alice.time_zone = "America/New_York"
    alice.save()
    quiet = {"quiet_start": time(22), "quiet_end": time(7), "quiet_mode": QuietMode.DROP}
    sub_alice = subscription_for(org_a, alice, **quiet)
    sub_bob = subscription_for(org_a, bob, **quiet)
    ts = datetime(2024, 6, 4, 4, 0, tzinfo=UTC)  # 00:00 in New York, 13:00 in Tokyo
    dispatch(org_a, anomalies(org_a, series, [ts]))
    assert messages(sub_alice) == []
    assert len(messages(sub_bob)) == 1


def test_a_flapping_series_gives_one_flapping_notice(org_a, alice, series):
    sub = subscription_for(org_a, alice, resolve_after_seconds=60, flap_threshold=4, flap_window_seconds=3600,
                           notify_resolution=True)
    for t in every(T0, 300, 12):  # every 5 minutes: each anomaly reopens the incident
        dispatch(org_a, anomalies(org_a, series, [t]))
    assert len(messages(sub, Notification.Kind.FLAPPING)) == 1
    assert len(messages(sub, Notification.Kind.ANOMALIES)) == 3  # openings before it was flapping
    assert len(messages(sub, Notification.Kind.RESOLVED)) == 3  # flapping incidents resolve silently


def test_resolution_is_notified_after_the_quiet_period(org_a, alice, series):
    sub = subscription_for(org_a, alice, resolve_after_seconds=300, notify_resolution=True)
    dispatch(org_a, anomalies(org_a, series, [T0]))
    assert resolve_quiet_incidents(T0 + timedelta(minutes=2)) == 0
    resolve_quiet_incidents(T0 + timedelta(minutes=10))
    resolve_quiet_incidents(T0 + timedelta(minutes=20))  # idempotent
    assert len(messages(sub, Notification.Kind.RESOLVED)) == 1
    assert sub.incidents.get().status == "resolved"


def test_snooze_session_only_and_min_severity(org_a, alice, series):
    snoozed = subscription_for(org_a, alice, snooze_until=T0 + timedelta(hours=1))
    session = subscription_for(org_a, alice, session_only=True)
    severe = subscription_for(org_a, alice, min_severity="high")
    saturday = datetime(2024, 6, 8, 14, 31, tzinfo=UTC)
    dispatch(org_a, anomalies(org_a, series, [T0, saturday]))
    assert len(messages(snoozed)) == 1  # the Saturday one, after the snooze
    assert len(messages(session)) == 1  # the Tuesday one, in session
    assert messages(severe) == []


def test_an_anomaly_detected_again_after_deletion_is_notified_again(org_a, alice, series):
    """Per-anomaly messages skip the used-key lookup; the anomaly id in their idempotency key
    keeps a re-detected anomaly (same series, time and source) from colliding with the first."""
    sub = subscription_for(org_a, alice, target=Target.SERIES, series=series)
    first = anomalies(org_a, series, [T0])
    dispatch(org_a, first)
    first[0].delete()
    dispatch(org_a, anomalies(org_a, series, [T0]))
    keys = list(Notification.objects.filter(subscription=sub).values_list("idempotency_key", flat=True))
    assert len(keys) == 2 and len(set(keys)) == 2
    assert payload_for(Notification.objects.filter(subscription=sub).latest("pk"))["type"] == "anomalies.detected"
