"""Shared fixtures: alice (org A owner), bob (org A viewer), carol (org B owner), API clients."""

import threading

import pytest
from django.conf import settings
from django.core.cache import cache
from rest_framework.test import APIClient

from accounts.models import Role
from accounts.services import create_api_key
from accounts.tenancy import actor_for_user
from anomalyhub.lib import localcache
from detection.api import export as export_api

from .factories import MembershipFactory, OrganizationFactory, UserFactory


@pytest.fixture(autouse=True)
def _clean_cache():
    # Throttle counters and cached state live in the (real) cache, resolved keys and series in
    # per-process caches; tests must not share them.
    cache.clear()
    localcache.clear_all()
    yield
    # The test client closes a streamed response only once it is read to the end (a server always
    # closes it): an export a test left unread must not keep its slot from the tests after it.
    # (A response left over releases the semaphore it took, not this new one.)
    export_api._SLOTS = threading.BoundedSemaphore(settings.EXPORT_STREAMS)


@pytest.fixture(autouse=True)
def _responses_match_openapi(settings):
    """Every /api/v1/ response a test client receives is checked against the OpenAPI document
    (tests/openapi_conformance.py): the schema cannot drift from what the code answers."""
    settings.MIDDLEWARE = ["tests.openapi_conformance.ResponseConformanceMiddleware", *settings.MIDDLEWARE]


@pytest.fixture
def org_a(db):
    return OrganizationFactory(name="Org A")


@pytest.fixture
def org_b(db):
    return OrganizationFactory(name="Org B")


@pytest.fixture
def alice(org_a):
    user = UserFactory(email="alice@example.com")
    MembershipFactory(user=user, organization=org_a, role=Role.OWNER)
    return user


@pytest.fixture
def bob(org_a):
    user = UserFactory(email="bob@example.com")
    MembershipFactory(user=user, organization=org_a, role=Role.VIEWER)
    return user


@pytest.fixture
def carol(org_b):
    user = UserFactory(email="carol@example.com")
    MembershipFactory(user=user, organization=org_b, role=Role.OWNER)
    return user


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_login(user)
    return client


@pytest.fixture
def alice_client(alice):
    return client_for(alice)


@pytest.fixture
def bob_client(bob):
    return client_for(bob)


@pytest.fixture
def carol_client(carol):
    return client_for(carol)


@pytest.fixture
def key_client(alice, org_a):
    """A client authenticating with an API key of org A; call with the scope wanted."""

    def make(scope="admin"):
        _, raw = create_api_key(actor=actor_for_user(alice, org_a.pk), name=f"{scope} key", scope=scope)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        return client

    return make


@pytest.fixture
def clean_store():
    """For transaction=True tests: the store's tables are not Django models, so flush them by hand."""
    yield
    from django.db import connection

    with connection.cursor() as cursor:
        for table in ("watchlists_tick", "watchlists_bar", "watchlists_metric", "watchlists_rollup",
                      "watchlists_feature"):
            cursor.execute(f"DELETE FROM {table}")  # on both engines (SQLite has no TRUNCATE)


@pytest.fixture
async def close_executor_connections():
    """Async tests reach the database from asgiref's executor thread; close its connection after
    the test so the test database can be dropped at the end of the session."""
    from channels.db import database_sync_to_async
    from django.db import connections

    yield
    await database_sync_to_async(connections.close_all)()
