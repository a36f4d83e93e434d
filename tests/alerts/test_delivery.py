"""Delivery through the real transports against local fakes: retries, signatures, SSRF, SendGrid."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts import signing
from alerts.models import DeliveryAttempt, Notification, Target
from alerts.services.delivery import backoff_seconds, deliver_notification
from alerts.services.webhooks import create_endpoint, rotate_secret
from alerts.transports.webhook import UnsafeDestination, check_destination
from tests.factories import SeriesFactory

from .factories import endpoint_for, subscription_for
from .helpers import anomalies, dispatch

pytestmark = pytest.mark.django_db


def _webhook_notification(org, user, url):
    endpoint = endpoint_for(org, url=url, created_by=user)
    series = SeriesFactory(organization=org, symbol="SPY")
    sub = subscription_for(org, user, target=Target.SERIES, series=series, channels=["webhook"], webhook=endpoint)
    dispatch(org, anomalies(org, series, [timezone.now()], observed={"close": 101.5}))
    return Notification.objects.get(subscription=sub), endpoint


def _deliver(n, now):
    return deliver_notification(notification_id=n.pk, organization_id=n.organization_id, now=now, rand=lambda: 0.5)


def test_a_receiver_failing_three_times_gets_the_notification_once_with_four_attempts_logged(org_a, alice, receiver):
    from prometheus_client import REGISTRY

    def counted(outcome):
        labels = {"channel": "webhook", "outcome": outcome}
        return REGISTRY.get_sample_value("anomalyhub_alert_deliveries_total", labels) or 0

    before = counted("retry"), counted("sent")
    receiver.statuses = [500, 500, 500]
    n, endpoint = _webhook_notification(org_a, alice, receiver.url)
    now = timezone.now()
    outcomes = []
    for _ in range(6):  # the retry path called directly, at each computed due time
        outcome = _deliver(n, now)
        outcomes.append(outcome.status)
        n.refresh_from_db()
        now = max(now, n.due_at)
    assert outcomes == ["retry", "retry", "retry", "sent", "skipped", "skipped"]
    assert (counted("retry") - before[0], counted("sent") - before[1]) == (3, 1)  # /metrics: by outcome
    assert n.status == "sent"
    attempts = list(DeliveryAttempt.objects.filter(notification=n).order_by("number"))
    assert [(a.number, a.status_code, a.outcome) for a in attempts] == [
        (1, 500, "transient"), (2, 500, "transient"), (3, 500, "transient"), (4, 200, "success")]
    assert all(a.latency_ms > 0 for a in attempts)
    # One message: the same id and the same body on every try (at-least-once, deduplicable).
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1
    assert len({r["body"] for r in receiver.requests}) == 1
    endpoint.refresh_from_db()
    assert endpoint.failure_count == 0


def test_backoff_is_exponential_with_jitter_and_honours_retry_after():
    assert [backoff_seconds(k, rand=lambda: 1.0) for k in (1, 2, 3)] == [10, 20, 40]
    assert backoff_seconds(2, rand=lambda: 0.0) == 10
    assert backoff_seconds(30, rand=lambda: 1.0) == 3600
    assert backoff_seconds(1, retry_after=120, rand=lambda: 1.0) == 120


def test_429_waits_for_retry_after_and_4xx_is_permanent(org_a, alice, receiver):
    receiver.statuses = [429, 410]
    receiver.extra_headers = {"Retry-After": "90"}
    n, _ = _webhook_notification(org_a, alice, receiver.url)
    now = timezone.now()
    assert _deliver(n, now).retry_in == 90
    n.refresh_from_db()
    assert _deliver(n, n.due_at).status == "failed"
    n.refresh_from_db()
    assert n.status == "failed" and "410" in n.last_error
    assert _deliver(n, n.due_at + timedelta(hours=1)).status == "skipped"  # never retried


def test_retries_stop_after_24_hours(org_a, alice, receiver):
    receiver.default = 503
    n, _ = _webhook_notification(org_a, alice, receiver.url)
    now = timezone.now()
    for _ in range(40):
        if _deliver(n, now).status == "failed":
            break
        n.refresh_from_db()
        now = n.due_at
    n.refresh_from_db()
    assert n.status == "failed"
    assert n.due_at - n.first_attempt_at <= timedelta(hours=24)


def test_an_endpoint_is_disabled_after_a_run_of_failures_and_its_owner_is_emailed(org_a, alice, receiver, settings):
    settings.WEBHOOK_DISABLE_AFTER = 3
    receiver.default = 500
    n, endpoint = _webhook_notification(org_a, alice, receiver.url)
    now = timezone.now()
    for _ in range(3):
        _deliver(n, now)
        n.refresh_from_db()
        now = n.due_at
    endpoint.refresh_from_db()
    assert not endpoint.enabled and endpoint.disabled_at
    notice = Notification.objects.get(kind="endpoint_disabled")
    assert notice.email == alice.email and notice.channel == "email"
    assert _deliver(n, now).status == "failed"  # nothing more goes to a disabled endpoint


def test_signature_verifies_per_the_documented_procedure(org_a, alice, receiver):
    n, endpoint = _webhook_notification(org_a, alice, receiver.url)
    _deliver(n, timezone.now())
    request = receiver.requests[0]
    signing.verify(endpoint.secret, request["headers"], request["body"])  # succeeds
    payload = json.loads(request["body"])
    assert payload["version"] == 1 and payload["type"] == "anomalies.detected"
    a = payload["data"]["anomalies"][0]
    assert a["series"]["symbol"] == "SPY" and a["observed"] == {"close": 101.5}
    assert set(a["label_links"]) == {"confirmed", "expected", "false_alarm", "new_trend"}
    assert set(payload["data"]["snooze_links"]) == {"1h", "session", "1d"}
    with pytest.raises(signing.SignatureError):
        signing.verify(endpoint.secret, request["headers"], request["body"].replace(b"101.5", b"999.9"))
    old = int(request["headers"]["webhook-timestamp"]) + signing.TOLERANCE_SECONDS + 1
    with pytest.raises(signing.SignatureError, match="timestamp"):
        signing.verify(endpoint.secret, request["headers"], request["body"], now=old)
    with pytest.raises(signing.SignatureError):
        signing.verify(signing.new_secret(), request["headers"], request["body"])


def test_during_rotation_both_secrets_verify(org_a, alice, receiver):
    n, endpoint = _webhook_notification(org_a, alice, receiver.url)
    old_secret = endpoint.secret
    endpoint = rotate_secret(actor=_admin(alice, org_a), endpoint=endpoint)
    _deliver(n, timezone.now())
    request = receiver.requests[0]
    signing.verify(old_secret, request["headers"], request["body"])
    signing.verify(endpoint.secret, request["headers"], request["body"])


def _admin(user, org):
    from accounts.tenancy import actor_for_user

    return actor_for_user(user, org.pk)


def test_a_private_address_is_refused_with_a_clear_error(org_a, alice, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_IPS = False
    for url in ("http://127.0.0.1:8080/hook", "http://10.1.2.3/hook", "http://169.254.169.254/latest/meta-data",
                "http://[::1]/hook", "http://localhost/hook"):
        with pytest.raises(UnsafeDestination, match="private, loopback or link-local"):
            check_destination(url)
    with pytest.raises(UnsafeDestination):
        create_endpoint(actor=_admin(alice, org_a), url="http://192.168.1.10/hook")
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    check_destination("http://127.0.0.1:8080/hook")  # allow-listed by the operator


def test_a_private_address_is_refused_over_the_api(alice_client, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_IPS = False
    response = alice_client.post("/api/v1/webhooks/", {"url": "http://127.0.0.1:9000/hook"}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "unsafe_webhook_url" and "private, loopback or link-local" in error["message"]


def test_a_private_address_is_refused_at_send_time(org_a, alice, receiver, settings):
    n, _ = _webhook_notification(org_a, alice, receiver.url)
    settings.WEBHOOK_ALLOW_PRIVATE_IPS = False  # e.g. DNS now points somewhere internal
    assert _deliver(n, timezone.now()).status == "failed"
    assert receiver.requests == []
    assert DeliveryAttempt.objects.get(notification=n).outcome == "permanent"


def test_email_goes_through_sendgrid_v3_with_text_and_html(org_a, alice, sendgrid):
    series = SeriesFactory(organization=org_a, symbol="QQQ")
    sub = subscription_for(org_a, alice, target=Target.SERIES, series=series)
    dispatch(org_a, anomalies(org_a, series, [timezone.now()], text="close > 400"))
    n = Notification.objects.get(subscription=sub)
    assert _deliver(n, timezone.now()).status == "sent"
    request = sendgrid.requests[0]
    assert request["headers"]["authorization"] == "Bearer SG.test-key"
    body = json.loads(request["body"])
    assert body["personalizations"] == [{"to": [{"email": "alice@example.com"}]}]
    assert body["subject"].startswith("[AnomalyHub] QQQ: close > 400")
    assert [c["type"] for c in body["content"]] == ["text/plain", "text/html"]
    assert "/api/v1/alerts/links/" in body["content"][0]["value"]
    assert DeliveryAttempt.objects.get(notification=n).status_code == 202


def test_sendgrid_429_and_5xx_are_retried_4xx_is_not(org_a, alice, sendgrid):
    sendgrid.statuses = [429, 502, 400]
    sendgrid.extra_headers = {"Retry-After": "30"}
    series = SeriesFactory(organization=org_a)
    subscription_for(org_a, alice, target=Target.SERIES, series=series)
    dispatch(org_a, anomalies(org_a, series, [timezone.now()]))
    n = Notification.objects.get()
    now = timezone.now()
    assert _deliver(n, now).retry_in == 30
    n.refresh_from_db()
    assert _deliver(n, n.due_at).status == "retry"
    n.refresh_from_db()
    assert _deliver(n, n.due_at).status == "failed"


def test_django_email_backend_uses_the_same_sendgrid_client(sendgrid, settings):
    from django.core.mail import EmailMultiAlternatives, get_connection

    message = EmailMultiAlternatives("Reset your password", "plain body", "AnomalyHub <a@anomalyhub.local>",
                                     ["x@example.com"], connection=get_connection(
                                         "alerts.transports.email.SendGridEmailBackend"))
    message.attach_alternative("<p>html body</p>", "text/html")
    assert message.send() == 1
    body = json.loads(sendgrid.requests[0]["body"])
    assert body["from"] == {"email": "a@anomalyhub.local", "name": "AnomalyHub"}
    assert body["content"] == [{"type": "text/plain", "value": "plain body"},
                               {"type": "text/html", "value": "<p>html body</p>"}]


def _membership_ends(org, user, how):
    from accounts.models import Membership

    if how == "removed":
        Membership.objects.filter(organization=org, user=user).delete()
    else:
        user.is_active = False
        user.save()


@pytest.mark.parametrize("how", ["removed", "deactivated"])
def test_a_person_who_left_gets_no_more_alerts(org_a, alice, bob, sendgrid, how):
    """Their subscriptions stay (a returning member finds them), but plan nothing while they are out."""
    series = SeriesFactory(organization=org_a)
    kept, left = (subscription_for(org_a, user, target=Target.SERIES, series=series) for user in (alice, bob))
    _membership_ends(org_a, bob, how)
    dispatch(org_a, anomalies(org_a, series, [timezone.now()]))
    assert Notification.objects.filter(subscription=kept).count() == 1
    assert not Notification.objects.filter(subscription=left).exists()


@pytest.mark.parametrize("how", ["removed", "deactivated"])
def test_a_message_waiting_for_a_person_who_left_is_not_sent(org_a, alice, bob, sendgrid, how):
    series = SeriesFactory(organization=org_a)
    sub = subscription_for(org_a, bob, target=Target.SERIES, series=series)
    dispatch(org_a, anomalies(org_a, series, [timezone.now()]))
    n = Notification.objects.get(subscription=sub)  # planned while bob was a member, not sent yet
    _membership_ends(org_a, bob, how)
    assert _deliver(n, timezone.now()).status == "failed"
    n.refresh_from_db()
    assert n.status == Notification.Status.FAILED and "no longer" in n.last_error
    assert DeliveryAttempt.objects.get(notification=n).outcome == DeliveryAttempt.Outcome.PERMANENT
    assert sendgrid.requests == []
