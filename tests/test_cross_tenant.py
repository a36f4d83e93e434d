"""Tenant isolation across every REST route (GraphQL and WebSockets join as they land)."""

import pytest

from accounts.services import create_api_key
from accounts.tenancy import actor_for_user

from .conftest import client_for
from .tenancy_walker import EXEMPT, api_routes, walk_as_other_tenant

pytestmark = pytest.mark.django_db


def test_every_rest_route_hides_other_tenants_objects(carol, org_a, alice):
    problems = walk_as_other_tenant(client_for(carol), org_a)
    assert problems == []


def test_every_rest_route_hides_other_tenants_objects_from_api_keys(carol, org_b, org_a, alice):
    from rest_framework.test import APIClient

    _, raw = create_api_key(actor=actor_for_user(carol, org_b.pk), name="k", scope="admin")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert walk_as_other_tenant(client, org_a) == []


def test_walker_discovers_routes():
    names = {r.name for r in api_routes()}
    assert {"organization-list", "organization-detail", "apikey-list", "apikey-detail",
            "membership-detail", "invitation-list"} <= names


def test_exempt_routes_exist():
    names = {r.name.split(":")[-1] for r in api_routes()}
    assert set(EXEMPT) <= names, set(EXEMPT) - names


@pytest.mark.urls("tests.unscoped_urls")
def test_walker_catches_a_route_that_forgets_scoping(carol, org_a, alice):
    problems = walk_as_other_tenant(client_for(carol), org_a, urlconf="tests.unscoped_urls")
    assert any("leaky-detail" in p and "not 404" in p for p in problems), problems
    assert any("leaky-list" in p and "lists another organization" in p for p in problems), problems
