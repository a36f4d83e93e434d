"""Resolved API keys are remembered per process for API_KEY_CACHE_SECONDS, and forgotten at once
when the key is revoked, changed or deleted."""

import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.models import ApiKey, Membership, User
from accounts.services import create_api_key, resolve_api_key, revoke_api_key
from accounts.tenancy import actor_for_user


@pytest.fixture
def raw_key(alice, org_a):
    _, raw = create_api_key(actor=actor_for_user(alice, org_a.pk), name="cached", scope="read")
    return raw


@pytest.mark.django_db
def test_a_resolved_key_is_served_without_a_query_until_it_expires(raw_key):
    first = resolve_api_key(raw_key)
    with CaptureQueriesContext(connection) as queries:
        assert resolve_api_key(raw_key) == first
    assert len(queries) == 0
    from accounts import services

    services._RESOLVED.expire(time.monotonic() + 3600)  # an hour on: past every entry's expiry
    with CaptureQueriesContext(connection) as queries:
        assert resolve_api_key(raw_key) == first
    assert len(queries) == 1


@pytest.mark.django_db
def test_revoking_or_deleting_a_key_takes_effect_at_once(raw_key, alice, org_a, key_client):
    key = resolve_api_key(raw_key)
    revoke_api_key(actor=actor_for_user(alice, org_a.pk), key_id=key.pk)
    assert resolve_api_key(raw_key) is None

    _, other = create_api_key(actor=actor_for_user(alice, org_a.pk), name="deleted", scope="read")
    assert resolve_api_key(other) is not None
    ApiKey.objects.get(key_hash=resolve_api_key(other).key_hash).delete()
    assert resolve_api_key(other) is None


@pytest.mark.django_db
def test_over_rest_a_revoked_key_is_refused_on_its_next_request(raw_key, alice_client):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw_key}")
    assert client.get("/api/v1/series/").status_code == 200
    key_id = resolve_api_key(raw_key).pk
    assert alice_client.delete(f"/api/v1/api-keys/{key_id}/").status_code == 204
    assert client.get("/api/v1/series/").status_code == 401


@pytest.mark.django_db
def test_a_wrong_secret_with_a_known_prefix_is_not_served_from_the_cache(raw_key):
    assert resolve_api_key(raw_key) is not None
    assert resolve_api_key(raw_key[:-1] + ("A" if raw_key[-1] != "A" else "B")) is None


@pytest.mark.django_db
def test_deleting_the_keys_creator_drops_the_cached_copies(alice, org_a):
    creator = User.objects.create_user(email="leaver@example.com", password="pw-leaver-123456")
    Membership.objects.create(user=creator, organization=org_a, role="admin")
    _, raw = create_api_key(actor=actor_for_user(creator, org_a.pk), name="orphan", scope="read")
    assert resolve_api_key(raw).created_by_id == creator.pk
    creator.delete()  # created_by becomes NULL through a bulk UPDATE: no signal for the key
    key = resolve_api_key(raw)
    assert key is not None and key.created_by_id is None
