"""Webhook receivers that hang, drip their answer, or answer slowly: every delivery is recorded,
retried until delivered, and a send never holds the worker longer than the transport's deadline."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone

from alerts.models import DeliveryAttempt, Notification, Target
from alerts.services.delivery import deliver_notification
from alerts.services.dispatch import dispatch_anomalies
from alerts.transports import webhook
from tests.alerts.factories import endpoint_for, subscription_for
from tests.factories import AnomalyFactory, MembershipFactory, OrganizationFactory, SeriesFactory, UserFactory

from .fake_receiver import Receiver
from .report import record

pytestmark = pytest.mark.django_db
DEADLINE_S = 1.5


@pytest.fixture
def short_deadline(monkeypatch):
    # The production deadline is 10 s; the behaviour is the same at 1.5 s and the test stays fast.
    monkeypatch.setattr(webhook, "TIMEOUT_SECONDS", DEADLINE_S)


def _alert_to(receiver: Receiver, anomalies: int = 1) -> Notification:
    org = OrganizationFactory()
    user = MembershipFactory(organization=org, user=UserFactory()).user
    series = SeriesFactory(organization=org)
    endpoint = endpoint_for(org, url=receiver.url, created_by=user)
    subscription_for(org, user, target=Target.SERIES, series=series, channels=["webhook"], webhook=endpoint)
    ids = [AnomalyFactory(organization=org, series=series).pk for _ in range(anomalies)]
    assert dispatch_anomalies(organization_id=org.pk, anomaly_ids=ids) == 1
    return Notification.objects.get(organization=org)


def _deliver(n: Notification) -> tuple[str, float]:
    """What the alerts worker runs for one due row; returns (outcome, seconds it held the worker)."""
    n.refresh_from_db()
    started = time.monotonic()
    # A retry is due later: run it as the worker would at that time.
    outcome = deliver_notification(notification_id=n.pk, organization_id=n.organization_id,
                                   now=max(n.due_at, timezone.now()))
    return outcome.status, time.monotonic() - started


@pytest.mark.parametrize("mode", ["hang", "drip"])
def test_stuck_receiver_times_out_is_recorded_and_retried_until_delivered(short_deadline, mode):
    receiver = Receiver(mode)
    try:
        n = _alert_to(receiver)
        first, _ = _deliver(n)
        attempt = DeliveryAttempt.objects.get(notification=n)
        held = attempt.latency_ms / 1000  # the send alone (the rest is rendering, the same for any receiver)
        n.refresh_from_db()
        assert first == "retry", first
        assert held < DEADLINE_S + 0.5, f"a {mode}ing receiver held the worker {held:.1f} s"
        assert attempt.outcome == "transient" and "did not answer within" in attempt.error
        assert n.status == "pending" and n.due_at > attempt.created_at  # a retry is scheduled

        receiver.mode = "ok"  # the receiver recovers; the retry is sent when due
        second, _ = _deliver(n)
        assert second == "sent"
    finally:
        receiver.close()
    figures = receiver.figures()
    attempts = list(DeliveryAttempt.objects.filter(notification=n).order_by("number").values_list("outcome", flat=True))
    record("Faults", f"Webhook receiver {'hangs (never answers)' if mode == 'hang' else 'drips its answer 1 byte/s'}",
           sent=1, stored=Notification.objects.filter(pk=n.pk).count(), delivered=figures["delivered"],
           lost=1 - figures["delivered"], duplicates=figures["duplicates"],
           notes=f"worker held {held:.1f} s (deadline {DEADLINE_S} s, 10 s in production); attempts logged: "
                 f"{', '.join(attempts)}; the receiver saw {figures['received']} requests with one webhook-id")
    assert attempts == ["transient", "success"]
    assert figures["delivered"] == 1 and figures["duplicates"] == 0


def test_slow_receiver_within_the_deadline_is_delivered_once(short_deadline):
    receiver = Receiver("slow", delay=DEADLINE_S * 0.6)
    try:
        n = _alert_to(receiver)
        outcome, _ = _deliver(n)
    finally:
        receiver.close()
    attempt = DeliveryAttempt.objects.get(notification=n)
    figures = receiver.figures()
    record("Faults", f"Webhook receiver answers slowly ({DEADLINE_S * 0.6:.1f} s, under the deadline)",
           sent=1, stored=1, delivered=figures["delivered"], lost=1 - figures["delivered"],
           duplicates=figures["duplicates"], notes=f"one attempt, latency {attempt.latency_ms:.0f} ms recorded")
    assert outcome == "sent" and attempt.outcome == "success" and attempt.latency_ms >= DEADLINE_S * 600 * 0.9
    assert figures == {"received": 1, "delivered": 1, "duplicates": 0}


def test_retry_schedule_of_a_receiver_that_keeps_hanging(short_deadline):
    """Each timeout is one logged attempt and pushes the next one out with backoff; the row stays
    pending (not lost, not failed) until it is delivered or the 24 h retry window ends."""
    receiver = Receiver("hang")
    try:
        n = _alert_to(receiver)
        gaps = []
        for _ in range(3):
            before = Notification.objects.get(pk=n.pk).due_at
            assert _deliver(n)[0] == "retry"
            gaps.append((Notification.objects.get(pk=n.pk).due_at - before).total_seconds())
    finally:
        receiver.close()
    n.refresh_from_db()
    assert n.status == "pending" and n.attempts == 3
    assert DeliveryAttempt.objects.filter(notification=n, outcome="transient").count() == 3
    assert gaps[2] > gaps[0] > 4  # exponential, from 10 s base with jitter
