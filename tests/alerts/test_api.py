"""REST: subscriptions per user, webhooks with secrets shown once, deliveries, signed links, replay."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from alerts.models import AlertSubscription, Notification, Target, UsedLink
from alerts.services import links
from alerts.services.delivery import deliver_notification
from alerts.services.dispatch import resolve_quiet_incidents
from tests.factories import SeriesFactory

from .factories import endpoint_for, subscription_for
from .helpers import anomalies, dispatch, every

pytestmark = pytest.mark.django_db


def test_users_manage_their_own_subscriptions_and_admins_see_all(alice_client, bob_client, org_a, alice, bob):
    series = SeriesFactory(organization=org_a)
    created = bob_client.post("/api/v1/alert-subscriptions/", {"target": "series", "series": series.pk,
                                                                 "channels": ["email"], "cooldown_seconds": 60},
                              format="json")
    assert created.status_code == 201, created.json()
    bobs = created.json()["id"]
    alices = subscription_for(org_a, alice).pk
    assert [s["id"] for s in bob_client.get("/api/v1/alert-subscriptions/").json()["results"]] == [bobs]
    assert bob_client.get(f"/api/v1/alert-subscriptions/{alices}/").status_code == 404
    assert bob_client.patch(f"/api/v1/alert-subscriptions/{alices}/", {"name": "x"}, format="json").status_code == 404
    assert {s["id"] for s in alice_client.get("/api/v1/alert-subscriptions/").json()["results"]} == {alices, bobs}
    assert alice_client.patch(f"/api/v1/alert-subscriptions/{bobs}/", {"min_severity": "high"},
                              format="json").status_code == 200


def test_subscription_validation_is_a_clear_400(alice_client):
    response = alice_client.post("/api/v1/alert-subscriptions/", {"target": "series", "channels": ["webhook"]},
                                 format="json")
    assert response.status_code == 400
    assert set(response.json()["error"]["details"]) >= {"series", "webhook"}


def test_webhook_secret_is_shown_once_and_rotates(alice_client, bob_client):
    created = alice_client.post("/api/v1/webhooks/", {"url": "https://hooks.example.com/a"}, format="json")
    assert created.status_code == 201
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")
    pk = created.json()["id"]
    assert "secret" not in alice_client.get(f"/api/v1/webhooks/{pk}/").json()
    rotated = alice_client.post(f"/api/v1/webhooks/{pk}/rotate-secret/").json()
    assert rotated["secret"] != secret and rotated["previous_secret_expires_at"]
    assert bob_client.post("/api/v1/webhooks/", {"url": "https://hooks.example.com/b"},
                           format="json").status_code == 403  # viewers cannot add endpoints


def test_test_send_and_delivery_log_with_replay(alice_client, org_a, alice, receiver, django_capture_on_commit_callbacks):
    endpoint = endpoint_for(org_a, url=receiver.url, created_by=alice)
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(f"/api/v1/webhooks/{endpoint.pk}/test/")
    assert response.status_code == 202
    assert len(receiver.requests) == 1
    log = alice_client.get("/api/v1/deliveries/").json()["results"]
    assert log[0]["status"] == "sent" and log[0]["attempts_log"][0]["status_code"] == 200
    with django_capture_on_commit_callbacks(execute=True):
        replayed = alice_client.post(f"/api/v1/deliveries/{log[0]['id']}/replay/")
    assert replayed.status_code == 202
    assert len(receiver.requests) == 2 and receiver.requests[0]["body"] == receiver.requests[1]["body"]


def test_a_label_link_works_without_login_once_and_expires(org_a, alice):
    series = SeriesFactory(organization=org_a)
    anomaly = anomalies(org_a, series, [timezone.now()])[0]
    url = links.label_links(anomaly)["false_alarm"]
    path = url.split("testserver")[-1].split("8000")[-1]
    anonymous = APIClient()
    assert anonymous.get(path).json()["used"] is False
    response = anonymous.post(path)
    assert response.status_code == 200, response.json()
    anomaly.refresh_from_db()
    assert anomaly.feedback == "false_alarm"
    again = anonymous.post(path)
    assert again.status_code == 409 and again.json()["error"]["code"] == "link_used"
    stale = links.make_token(organization_id=org_a.pk, action="label", obj_id=anomaly.pk, value="confirmed",
                             now=timezone.now() - timedelta(days=8))
    expired = anonymous.post(f"/api/v1/alerts/links/{stale}/")
    assert expired.status_code == 410 and expired.json()["error"]["code"] == "link_expired"
    tampered = anonymous.post(path.replace("false_alarm", "confirmed").rstrip("/") + "x/")
    assert tampered.status_code == 404
    anomaly.refresh_from_db()
    assert anomaly.feedback == "false_alarm" and UsedLink.objects.count() == 1


def test_a_snooze_link_snoozes_the_subscription(org_a, alice):
    sub = subscription_for(org_a, alice)
    url = links.snooze_links(sub)["1h"]
    before = timezone.now()
    assert APIClient().post(url.split("8000")[-1]).status_code == 200
    sub.refresh_from_db()
    assert before + timedelta(minutes=59) < sub.snooze_until < before + timedelta(minutes=61)
    session = links.snooze_end(sub, "session", datetime(2024, 6, 4, 15, 0, tzinfo=UTC))
    assert session == datetime(2024, 6, 4, 20, 0, tzinfo=UTC)  # the NYSE close, 16:00 EDT


def _live_per_day(sub):
    per_day = {}
    for _key, ts in set(Notification.objects.filter(subscription=sub).values_list("message_key", "event_ts")):
        per_day[ts.date().isoformat()] = per_day.get(ts.date().isoformat(), 0) + 1
    return dict(sorted(per_day.items()))


def test_replay_counts_equal_live_dispatch_for_the_same_data(alice_client, org_a, alice):
    series = [SeriesFactory(organization=org_a, symbol=s) for s in ("AAA", "BBB", "CCC")]
    start = datetime(2024, 6, 3, 13, 30, tzinfo=UTC)
    sub = subscription_for(org_a, alice, target=Target.EVERYTHING, cooldown_seconds=900, group_window_seconds=300,
                           resolve_after_seconds=600, notify_resolution=True, session_only=True)
    rows = []
    for day in range(5):
        for k, s in enumerate(series):
            times = every(start + timedelta(days=day, minutes=7 * k), 97 + 13 * k, 40)
            rows += anomalies(org_a, s, times, severity=["low", "medium", "high"][k])
    for s in series:  # dispatched series by series, out of global time order, as the pipeline does
        dispatch(org_a, [a for a in rows if a.series_id == s.pk])
    resolve_quiet_incidents(start + timedelta(days=30))
    rows[0].feedback = "confirmed"
    rows[0].save()
    rows[1].feedback = "false_alarm"
    rows[1].save()
    window = "start=2024-06-01T00:00:00Z&end=2024-07-01T00:00:00Z"
    replayed = alice_client.post(f"/api/v1/alert-subscriptions/{sub.pk}/replay/?{window}").json()
    assert replayed["anomalies"]["count"] == len(rows)
    assert replayed["notifications"]["per_day"] == _live_per_day(sub)
    assert replayed["notifications"]["count"] == len({k for k in Notification.objects.filter(
        subscription=sub).values_list("message_key", flat=True)})
    assert replayed["precision"]["all"] == {"labelled": 2, "true": 1, "false": 1, "precision": 0.5}
    # The same subscription, unsaved, gives the same answer.
    body = {f: getattr(sub, f) for f in ("target", "cooldown_seconds", "group_window_seconds",
                                        "resolve_after_seconds", "notify_resolution", "session_only")}
    unsaved = alice_client.post(f"/api/v1/alert-subscriptions/replay/?{window}", body, format="json").json()
    assert unsaved["notifications"] == replayed["notifications"]
    assert AlertSubscription.objects.count() == 1


def test_delivery_log_shows_each_user_only_their_own(bob_client, alice_client, org_a, alice, bob):
    series = SeriesFactory(organization=org_a)
    subscription_for(org_a, alice)
    subscription_for(org_a, bob)
    dispatch(org_a, anomalies(org_a, series, [timezone.now()]))
    assert {d["email"] for d in bob_client.get("/api/v1/deliveries/").json()["results"]} == {bob.email}
    assert len(alice_client.get("/api/v1/deliveries/").json()["results"]) == 2
    n = Notification.objects.get(user=alice)
    assert deliver_notification(notification_id=n.pk, organization_id=org_a.pk).status == "sent"
