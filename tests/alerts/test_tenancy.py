"""The cross-tenant walker over the alerts routes alone (tests/test_cross_tenant.py walks them all)."""

import pytest

from tests.conftest import client_for
from tests.tenancy_walker import api_routes, walk_as_other_tenant

pytestmark = pytest.mark.django_db
URLS = "tests.alerts.alerts_urls"


def test_alerts_routes_are_walked():
    names = {r.name for r in api_routes(URLS)}
    assert {"alertsubscription-list", "alertsubscription-replay", "alertsubscription-replay-unsaved",
            "webhookendpoint-rotate-secret", "webhookendpoint-test", "delivery-replay", "alert-link"} <= names


@pytest.mark.urls(URLS)
def test_alerts_routes_hide_other_tenants_objects(carol, org_a, alice):
    assert walk_as_other_tenant(client_for(carol), org_a, urlconf=URLS) == []


@pytest.mark.urls(URLS)
def test_a_member_cannot_reach_another_members_subscriptions(bob, org_a, alice):
    from .factories import subscription_for

    theirs = subscription_for(org_a, alice)
    client = client_for(bob)
    assert client.get(f"/api/v1/alert-subscriptions/{theirs.pk}/").status_code == 404
    assert client.post(f"/api/v1/alert-subscriptions/{theirs.pk}/replay/?start=2024-01-01T00:00:00Z"
                       "&end=2024-02-01T00:00:00Z").status_code == 404
