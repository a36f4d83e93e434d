"""A real alerts worker SIGKILLed in the middle of a delivery: after a restart the notification is
delivered, once in the log, with the same webhook-id the receiver saw before the crash."""

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.models import DeliveryAttempt, Notification, Target
from alerts.services.delivery import sweep
from alerts.tasks import dispatch
from tests.factories import AnomalyFactory, MembershipFactory, OrganizationFactory, SeriesFactory, UserFactory
from tests.workers import Worker, queued_for_real, wait_for, worker_env

from .factories import endpoint_for, subscription_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def test_worker_killed_mid_dispatch_delivers_once_after_restart(receiver):
    org = OrganizationFactory()
    user = MembershipFactory(organization=org, user=UserFactory()).user
    series = SeriesFactory(organization=org)
    endpoint = endpoint_for(org, url=receiver.url, created_by=user)
    subscription_for(org, user, target=Target.SERIES, series=series, channels=["webhook"], webhook=endpoint)
    anomaly = AnomalyFactory(organization=org, series=series)
    receiver.hang = threading.Event()  # the first request is held open: the worker dies waiting
    env = worker_env()
    with queued_for_real():
        first = Worker("alerts", env)
        try:
            dispatch.delay(org.pk, [anomaly.pk])
            wait_for(lambda: len(receiver.requests) == 1, 60, message="the first delivery to reach the receiver")
            first.kill()
        finally:
            first.stop()
        receiver.hang.set()
        n = Notification.objects.get()
        assert n.status == "sending" and not DeliveryAttempt.objects.exists()

        second = Worker("alerts", env)
        try:
            dispatch.delay(org.pk, [anomaly.pk])  # a redelivered dispatch must not duplicate anything
            assert sweep(timezone.now(), stale_after=timedelta(0))["freed"] == 1  # what beat does
            wait_for(lambda: Notification.objects.get().status == "sent", 60, message="the retry to be sent")
        finally:
            second.stop()
    assert Notification.objects.count() == 1
    assert list(DeliveryAttempt.objects.values_list("outcome", flat=True)) == ["success"]
    assert len(receiver.requests) == 2
    assert len({r["headers"]["webhook-id"] for r in receiver.requests}) == 1
