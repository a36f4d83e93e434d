"""Alert replay over the month of the demo data (October 2013: IBM, BAC and AIG minute bars) equals
what live dispatch sent when the same month went through the real pipeline, and answers within 5 s.

Live: each file is replayed through watchlists.replay (ordinary ingest batches) -> detection
pipeline -> anomalies -> alerts dispatch, exactly as in production with Celery run eagerly.
Replay: alerts.services.replay over [2013-10-01, 2013-11-01) for every subscription."""

import time
from datetime import UTC, datetime, timedelta
from datetime import time as clock

import pytest

from accounts.tenancy import actor_for_user, system_actor
from alerts.models import AlertSubscription, Notification, Target
from alerts.services import dispatch
from alerts.services.dispatch import resolve_quiet_incidents
from alerts.services.replay import replay_subscription
from detection.models import Anomaly
from detection.services.rules import RuleInput, save_rule
from watchlists import replay as file_replay
from watchlists import services
from watchlists.demo import DATA, DEMO_SERIES

pytestmark = pytest.mark.django_db
START, END = datetime(2013, 10, 1, tzinfo=UTC), datetime(2013, 11, 1, tzinfo=UTC)
REPLAY_BUDGET_SECONDS = 5.0


def _live_counts(sub) -> tuple[int, dict[str, int]]:
    messages = set(Notification.objects.filter(subscription=sub).values_list("message_key", "event_ts"))
    per_day: dict[str, int] = {}
    for _key, ts in messages:
        per_day[ts.date().isoformat()] = per_day.get(ts.date().isoformat(), 0) + 1
    return len(messages), dict(sorted(per_day.items()))


@pytest.fixture
def demo_month(org_a, alice, bob, django_capture_on_commit_callbacks, monkeypatch):
    # Live, a group waits GROUP_GRACE of wall-clock time for the other series of its minute, then
    # is sent, and later arrivals make a follow-up. Here the files go in one after another, seconds
    # apart on a busy machine; replay models no arrival delay, so the grace covers the whole load.
    monkeypatch.setattr(dispatch, "GROUP_GRACE", timedelta(hours=1))
    actor = system_actor(org_a.pk)
    bars = [(symbol, path) for symbol, kind, _, path in DEMO_SERIES if kind == "bar"]
    series = [services.create_series(actor=actor, symbol=s, kind="bar", exchange="XNYS", bar_seconds=60)
              for s, _ in bars]
    watchlist = services.save_watchlist(actor=actor, name="US large caps", series_ids=[s.pk for s in series])
    rule = save_rule(actor=actor, data=RuleInput(name="jumps", watchlist=watchlist, severity="high",
                                                 metrics="abs(close - prev(close)) > 0.12"))
    subs = [
        AlertSubscription.objects.create(organization=org_a, user=alice, name="everything, grouped",
                                         channels=["email"], cooldown_seconds=600, group_window_seconds=300,
                                         notify_resolution=True, resolve_after_seconds=900),
        AlertSubscription.objects.create(organization=org_a, user=alice, name="watchlist incidents",
                                         target=Target.WATCHLIST, watchlist=watchlist, channels=["email"],
                                         incident_min_symbols=2, session_only=True),
        AlertSubscription.objects.create(organization=org_a, user=bob, name="IBM, quiet at lunch",
                                         target=Target.SERIES, series=series[0], channels=["email"],
                                         quiet_start=clock(12, 0), quiet_end=clock(13, 30), flap_threshold=3,
                                         flap_window_seconds=1800),
        AlertSubscription.objects.create(organization=org_a, user=bob, name="the rule, dropped at lunch",
                                         target=Target.RULE, rule=rule, channels=["email"], cooldown_seconds=120,
                                         quiet_start=clock(12, 0), quiet_end=clock(13, 0), quiet_mode="drop"),
    ]
    for s, (_, path) in zip(series, bars, strict=True):
        with django_capture_on_commit_callbacks(execute=True):  # detection, then alerts, after each batch
            file_replay.replay(actor=actor, series=s, points=file_replay.load(s, DATA / path), speed=None,
                               time_mode="keep")
    resolve_quiet_incidents(END)
    return subs


def test_replay_of_the_demo_month_equals_live_dispatch_and_answers_within_5s(demo_month, alice, org_a,
                                                                             alice_client):
    anomalies = Anomaly.objects.filter(organization=org_a).count()
    assert anomalies > 50, "the demo month should give the comparison something to compare"
    actor = actor_for_user(alice, org_a.pk)
    for sub in demo_month:
        started = time.perf_counter()
        replayed = replay_subscription(actor=actor, subscription=sub, start=START, end=END)
        elapsed = time.perf_counter() - started
        count, per_day = _live_counts(sub)
        assert count > 0, sub.name
        assert replayed["notifications"]["count"] == count, sub.name
        assert replayed["notifications"]["per_day"] == per_day, sub.name
        assert elapsed < REPLAY_BUDGET_SECONDS, f"{sub.name}: {elapsed:.2f}s"
    # And through REST, as a user asks it ("would this have fired?"), within the same budget.
    started = time.perf_counter()
    response = alice_client.post(f"/api/v1/alert-subscriptions/{demo_month[0].pk}/replay/"
                                 "?start=2013-10-01T00:00:00Z&end=2013-11-01T00:00:00Z")
    assert response.status_code == 200 and time.perf_counter() - started < REPLAY_BUDGET_SECONDS
    assert response.json()["notifications"]["count"] == _live_counts(demo_month[0])[0]
