"""Bad input to every write endpoint gets a clear 4xx JSON error, never a 500."""

import json

import pytest
from django.conf import settings

from accounts.models import Membership

pytestmark = pytest.mark.django_db


def _write_endpoints(org_a, alice):
    mine = Membership.objects.get(user=alice, organization=org_a)
    return [
        ("post", "/api/v1/auth/signup/"),
        ("post", "/api/v1/auth/verify-email/"),
        ("post", "/api/v1/auth/login/"),
        ("post", "/api/v1/auth/password/reset/"),
        ("post", "/api/v1/organizations/"),
        ("patch", f"/api/v1/organizations/{org_a.pk}/"),
        ("patch", f"/api/v1/members/{mine.pk}/"),
        ("post", "/api/v1/invitations/"),
        ("post", "/api/v1/invitations/accept/"),
        ("post", "/api/v1/api-keys/"),
    ]


BAD_BODIES = {
    "malformed json": '{"name": ',
    "not an object": "[1, 2, 3]",
    "wrong types": json.dumps({"name": ["x"], "email": 5, "password": {"a": 1}, "role": 7, "scope": [],
                               "key": None, "token": 3, "retention_days": "many"}),
    "nul bytes": json.dumps({"name": "a\u0000b", "email": "a\u0000@b.c"}),
}


def _assert_clear_error(response, expected=None):
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:300])
    if expected:
        assert response.status_code == expected
    body = response.json()
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["message"]


@pytest.mark.parametrize("case", list(BAD_BODIES))
def test_bad_bodies_get_clear_4xx(alice_client, alice, org_a, case):
    for method, url in _write_endpoints(org_a, alice):
        response = getattr(alice_client, method)(url, data=BAD_BODIES[case], content_type="application/json")
        _assert_clear_error(response)


def test_missing_fields_name_each_field(alice_client, alice, org_a):
    for method, url in _write_endpoints(org_a, alice):
        if method != "post" or url.endswith("/verify-email/") is False and "accept" in url:
            continue
        response = alice_client.post(url, data={}, format="json")
        _assert_clear_error(response, 400)
        assert response.json()["error"]["details"], url


def test_oversized_body_is_413_with_the_limit(alice_client, alice, org_a):
    body = json.dumps({"name": "x" * (settings.API_MAX_BODY_BYTES + 10)})
    for method, url in _write_endpoints(org_a, alice):
        response = getattr(alice_client, method)(url, data=body, content_type="application/json")
        _assert_clear_error(response, 413)
        assert str(settings.API_MAX_BODY_BYTES) in response.json()["error"]["message"]


def test_unsupported_media_type_is_415(alice_client):
    response = alice_client.post("/api/v1/organizations/", data="name=x", content_type="text/plain")
    _assert_clear_error(response, 415)


def test_unknown_api_route_is_json_404(alice_client):
    _assert_clear_error(alice_client.get("/api/v1/nope/"), 404)


def test_non_numeric_ids_are_404_not_500(alice_client):
    for url in ("/api/v1/organizations/abc/", "/api/v1/api-keys/99999999999999999999999/", "/api/v1/members/-1/"):
        _assert_clear_error(alice_client.get(url), 404)


def test_anonymous_gets_401_or_403_json(client):
    response = client.get("/api/v1/organizations/")
    assert response.status_code in (401, 403)
    assert response.json()["error"]["code"] == "not_authenticated"
