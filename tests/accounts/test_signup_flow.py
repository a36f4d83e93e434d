"""Signup -> verify email -> create organization -> create API key -> GET /me/ with the key."""

import re

import pytest
from django.core import mail
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


def _verification_key(message) -> str:
    match = re.search(r"/accounts/confirm-email/([^/\s]+)/", message.body)
    assert match, message.body
    return match.group(1)


def test_signup_verify_org_key_me():
    client = APIClient()
    r = client.post("/api/v1/auth/signup/", {"email": "dana@example.com", "password": "a-long-secret-42"}, format="json")
    assert r.status_code == 201, r.content

    # Mandatory verification: no login before the link is used.
    r = client.post("/api/v1/auth/login/", {"email": "dana@example.com", "password": "a-long-secret-42"}, format="json")
    assert r.status_code == 403 and r.json()["error"]["code"] == "email_not_verified"

    assert len(mail.outbox) == 1
    key = _verification_key(mail.outbox[0])
    r = client.post("/api/v1/auth/verify-email/", {"key": key}, format="json")
    assert r.status_code == 200, r.content

    r = client.post("/api/v1/auth/login/", {"email": "dana@example.com", "password": "a-long-secret-42"}, format="json")
    assert r.status_code == 200, r.content

    r = client.post("/api/v1/organizations/", {"name": "Dana Capital"}, format="json")
    assert r.status_code == 201, r.content
    org = r.json()
    assert org["role"] == "owner" and org["slug"] == "dana-capital"

    r = client.post("/api/v1/api-keys/", {"name": "ingest bot", "scope": "ingest"}, format="json")
    assert r.status_code == 201, r.content
    raw = r.json()["key"]
    assert raw.startswith("ahk_")

    program = APIClient()
    program.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    me = program.get("/api/v1/me/").json()
    assert me["organization"]["id"] == org["id"]
    assert me["scope"] == "ingest" and me["actions"] == ["ingest", "view"]
    assert me["user"] is None  # a key acts for the organization with its scope, never as the person who made it

    # The key is never shown again.
    listed = client.get("/api/v1/api-keys/").json()["results"]
    assert "key" not in listed[0] and listed[0]["prefix"] == raw.split("_")[0] + "_" + raw.split("_")[1]


def test_verification_link_works_in_the_browser_flow():
    client = APIClient()
    client.post("/api/v1/auth/signup/", {"email": "erin@example.com", "password": "a-long-secret-42"}, format="json")
    key = _verification_key(mail.outbox[0])
    r = client.post(f"/accounts/confirm-email/{key}/")
    assert r.status_code == 302
    from allauth.account.models import EmailAddress

    assert EmailAddress.objects.get(email="erin@example.com").verified


def test_signup_with_existing_email_does_not_reveal_it(alice):
    r = APIClient().post("/api/v1/auth/signup/", {"email": alice.email, "password": "a-long-secret-42"}, format="json")
    assert r.status_code == 201


def test_signup_rejects_weak_password_with_field_error():
    r = APIClient().post("/api/v1/auth/signup/", {"email": "x@example.com", "password": "123"}, format="json")
    assert r.status_code == 400
    assert "password" in r.json()["error"]["details"]


def test_bad_verification_key_is_a_clear_400():
    r = APIClient().post("/api/v1/auth/verify-email/", {"key": "nope"}, format="json")
    assert r.status_code == 400 and "key" in r.json()["error"]["details"]


def test_password_reset_sends_a_link_for_known_addresses_only(alice):
    client = APIClient()
    assert client.post("/api/v1/auth/password/reset/", {"email": alice.email}, format="json").status_code == 202
    assert client.post("/api/v1/auth/password/reset/", {"email": "ghost@example.com"}, format="json").status_code == 202
    assert len(mail.outbox) >= 1 and "password/reset/key/" in mail.outbox[0].body


def test_logout_ends_the_session(alice_client):
    assert alice_client.get("/api/v1/me/").status_code == 200
    assert alice_client.post("/api/v1/auth/logout/").status_code == 204
    assert alice_client.get("/api/v1/me/").status_code in (401, 403)


def test_login_is_throttled_with_a_clear_429(settings):
    client = APIClient()
    codes = [client.post("/api/v1/auth/login/", {"email": "a@example.com", "password": "wrong-password"},
                         format="json").status_code for _ in range(25)]
    assert codes[0] == 400 and codes[-1] == 429
    r = client.post("/api/v1/auth/login/", {"email": "a@example.com", "password": "x"}, format="json")
    assert r.json()["error"]["code"] == "rate_limited" and "Retry-After" in r.headers
