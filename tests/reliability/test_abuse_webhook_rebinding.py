"""Webhook DNS rebinding through a real Celery alerts worker (issue 22, case 15).

The worker resolves the endpoint's host name through a rebinding DNS: 127.0.0.2 (allow-listed by
the operator) on the first lookup, 127.0.0.3 (an "internal" service, refused) on every later one.
A receiver listens on each address, on the same port. The delivery must reach 127.0.0.2, the
address the SSRF guard checked, and never 127.0.0.3: resolving the name again to connect would.
"""

from __future__ import annotations

import os
import textwrap

import pytest

from alerts.models import DeliveryAttempt, Notification, Target
from alerts.tasks import dispatch
from tests.alerts.factories import endpoint_for, subscription_for
from tests.factories import AnomalyFactory, MembershipFactory, OrganizationFactory, SeriesFactory, UserFactory
from tests.workers import Worker, queued_for_real, wait_for, worker_env

from .abuse import measured
from .fake_receiver import Receiver
from .report import record

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.slow]

HOST = "rebind.example.test"
CHECKED, REBOUND = "127.0.0.2", "127.0.0.3"

# Fakes the outside world (a DNS server that changes its answer), not our code: the worker's own
# socket.getaddrinfo answers CHECKED for HOST once, REBOUND afterwards; every other name resolves
# as usual. Python imports sitecustomize at start-up from the first PYTHONPATH entry holding one.
REBINDING_DNS = textwrap.dedent(f"""
    import socket

    _real = socket.getaddrinfo
    _lookups = 0


    def getaddrinfo(host, port, *args, **kwargs):
        global _lookups
        if host != {HOST!r}:
            return _real(host, port, *args, **kwargs)
        _lookups += 1
        address = {CHECKED!r} if _lookups == 1 else {REBOUND!r}
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))]


    socket.getaddrinfo = getaddrinfo
""")


def test_delivery_connects_to_the_checked_address_not_a_rebound_one(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(REBINDING_DNS)
    allowed = Receiver(host=CHECKED)
    internal = Receiver(host=REBOUND, port=allowed.port)
    try:
        org = OrganizationFactory()
        user = MembershipFactory(organization=org, user=UserFactory()).user
        series = SeriesFactory(organization=org)
        # Created directly: the API's guard would resolve HOST in this process, which has no fake DNS.
        endpoint = endpoint_for(org, url=f"http://{HOST}:{allowed.port}/hook", created_by=user)
        subscription_for(org, user, target=Target.SERIES, series=series, channels=["webhook"], webhook=endpoint)
        anomaly = AnomalyFactory(organization=org, series=series)
        env = worker_env(PYTHONPATH=os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])),
                         WEBHOOK_ALLOW_PRIVATE_IPS="false", WEBHOOK_ALLOWED_HOSTS=CHECKED)
        with queued_for_real():
            worker = Worker("alerts", env)
            try:
                with measured(worker.pid) as cost:
                    dispatch.delay(org.pk, [anomaly.pk])
                    wait_for(lambda: Notification.objects.filter(organization=org, status__in=["sent", "failed"])
                             .exists(), 60, message="the webhook delivery to finish")
            finally:
                worker.stop()
    finally:
        allowed.close()
        internal.close()
    n = Notification.objects.get(organization=org)
    attempts = list(DeliveryAttempt.objects.filter(notification=n).values_list("outcome", "error"))
    reached = f"{CHECKED}: {len(allowed.requests)}, {REBOUND}: {len(internal.requests)}"
    record("Abuse", "Webhook DNS rebinding (case 15)",
           outcome=f"delivery {n.status}; requests received {reached}", **cost.row(),
           bound=f"only the checked address ({CHECKED}) is contacted; {REBOUND} (refused) never")
    assert internal.requests == [], f"the worker connected to the rebound address ({reached}); attempts {attempts}"
    assert n.status == "sent" and len(allowed.requests) == 1, f"{n.status}, {reached}, attempts {attempts}"
    assert allowed.requests[0]["host"] == f"{HOST}:{allowed.port}"  # the Host header keeps the name
