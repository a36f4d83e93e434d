"""Guards around authentication: brute-force limits with clear 429s, CSRF on session writes, and the
production settings' cookies and headers (`check --deploy` clean)."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from django.utils.crypto import get_random_string
from rest_framework.test import APIClient

from accounts import bruteforce
from accounts.models import ApiKey
from accounts.services import create_api_key
from accounts.tenancy import actor_for_user
from tests.reliability.report import record
from watchlists.models import Watchlist

pytestmark = pytest.mark.django_db
ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct-horse-battery"


def _login(email, password, ip="10.0.0.1"):
    return Client(REMOTE_ADDR=ip).post("/api/v1/auth/login/", {"email": email, "password": password},
                                       content_type="application/json")


def test_password_guessing_on_one_address_is_stopped_with_429(alice):
    # Spread over many client addresses, as a botnet would: the per-client throttle alone would not bite.
    codes = [_login("alice@example.com", f"guess-{i}", ip=f"10.0.0.{i}").status_code
             for i in range(bruteforce.FAILED_LOGINS)]
    refused = _login("alice@example.com", PASSWORD, ip="10.0.9.9")  # even the right password now waits
    assert codes == [400] * bruteforce.FAILED_LOGINS
    assert refused.status_code == 429 and int(refused["Retry-After"]) >= bruteforce.LOGIN_WINDOW
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and error["message"].endswith("or reset your password.")
    assert _login("carol@example.com", "wrong-password!").status_code == 400  # other addresses unaffected
    record("Isolation and access", "Brute force: password guessing on one address from many IPs",
           outcome=f"{bruteforce.FAILED_LOGINS} x 400, then 429 '{error['message']}'",
           retry_after=refused["Retry-After"])


def test_a_successful_login_clears_the_failure_count(alice):
    for i in range(bruteforce.FAILED_LOGINS - 1):
        _login("alice@example.com", f"guess-{i}")
    assert _login("alice@example.com", PASSWORD).status_code == 200
    assert _login("alice@example.com", "one-more-typo").status_code == 400


def _with_key(raw, ip):
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def test_api_key_guessing_is_stopped_with_429_over_rest_and_graphql(alice, org_a):
    _, real = create_api_key(actor=actor_for_user(alice, org_a.pk), name="real", scope="read")
    guesses = [f"ahk_{secrets.token_hex(4)}_{secrets.token_urlsafe(32)}" for _ in range(bruteforce.FAILED_KEYS)]
    codes = [_with_key(g, "10.1.1.1").get("/api/v1/me/").status_code for g in guesses]
    rest = _with_key(guesses[0], "10.1.1.1").get("/api/v1/me/")
    graphql = Client(REMOTE_ADDR="10.1.1.1").post(
        "/graphql/", data=json.dumps({"query": "{ me { role } }"}), content_type="application/json",
        headers={"Authorization": f"Bearer {guesses[0]}"})
    assert codes == [401] * bruteforce.FAILED_KEYS
    assert rest.status_code == 429 and rest.json()["error"]["code"] == "rate_limited" and rest["Retry-After"]
    assert graphql.status_code == 429 and graphql.json()["errors"][0]["extensions"]["code"] == "rate_limited"
    # Another client is not punished for the scanner's guesses, nor a correct key from the scanner's address.
    assert _with_key(guesses[1], "10.2.2.2").get("/api/v1/me/").status_code == 401
    assert _with_key(real, "10.1.1.1").get("/api/v1/me/").status_code == 200
    record("Isolation and access", "Brute force: API-key guessing from one client",
           outcome=f"{bruteforce.FAILED_KEYS} x 401, then 429 (REST) and 429 rate_limited (GraphQL)",
           retry_after=rest["Retry-After"])


def test_session_writes_need_the_csrf_token_but_api_keys_do_not(alice, org_a, key_client):
    browser = APIClient(enforce_csrf_checks=True)
    browser.force_login(alice)
    refused = browser.post("/api/v1/watchlists/", {"name": "no token"}, format="json")
    graphql_refused = browser.post("/graphql/", {"query": 'mutation { createWatchlist(input: {name: "x"}) '
                                                          '{ __typename } }'}, format="json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
    assert graphql_refused.status_code == 403 and graphql_refused.json()["errors"][0]["extensions"]["code"] == \
        "csrf_failed"
    assert not Watchlist.objects.filter(organization=org_a).exists()

    token = get_random_string(32)  # what the csrftoken cookie holds once any page with a form was served
    browser.cookies["csrftoken"] = token
    accepted = browser.post("/api/v1/watchlists/", {"name": "with token"}, format="json",
                            headers={"X-CSRFToken": token})
    assert accepted.status_code == 201, accepted.content
    assert key_client("admin").post("/api/v1/watchlists/", {"name": "by key"}, format="json").status_code == 201
    record("Isolation and access", "CSRF on session-authenticated writes",
           outcome="no token: 403 (REST) / 403 csrf_failed (GraphQL), nothing stored; with token: 201; "
                   "API key: 201 (no cookie to ride on)")


PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.test import Client
from django.utils.crypto import get_random_string
secure = Client(HTTP_HOST="anomalyhub.example.com").get("/healthz", secure=True)
plain = Client(HTTP_HOST="anomalyhub.example.com").get("/api/v1/me/")
print(json.dumps({
    "settings": {name: getattr(settings, name) for name in (
        "DEBUG", "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "CSRF_COOKIE_SECURE", "SECURE_SSL_REDIRECT",
        "SECURE_HSTS_SECONDS", "SECURE_CONTENT_TYPE_NOSNIFF", "X_FRAME_OPTIONS", "SESSION_COOKIE_SAMESITE")},
    "headers": {k: secure.get(k) for k in ("Strict-Transport-Security", "X-Content-Type-Options",
                                           "X-Frame-Options", "Referrer-Policy")},
    "plain_http": [plain.status_code, plain.get("Location")],
}))
"""


def _production_env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DEBUG", "SECURE_"))}
    env.update(DJANGO_ENV="production", SECRET_KEY=secrets.token_urlsafe(50), ALLOWED_HOSTS="anomalyhub.example.com",
               DJANGO_SETTINGS_MODULE="anomalyhub.settings")
    return env


def test_production_settings_pass_check_deploy_and_send_secure_headers():
    env = _production_env()
    check = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    probe = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=120)
    assert probe.returncode == 0, probe.stderr
    found = json.loads(probe.stdout.strip().splitlines()[-1])
    assert found["settings"] == {
        "DEBUG": False, "SESSION_COOKIE_SECURE": True, "SESSION_COOKIE_HTTPONLY": True, "CSRF_COOKIE_SECURE": True,
        "SECURE_SSL_REDIRECT": True, "SECURE_HSTS_SECONDS": 31536000, "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "X_FRAME_OPTIONS": "DENY", "SESSION_COOKIE_SAMESITE": "Lax"}
    assert found["headers"] == {"Strict-Transport-Security": "max-age=31536000; includeSubDomains; preload",
                                "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
                                "Referrer-Policy": "same-origin"}
    assert found["plain_http"] == [301, "https://anomalyhub.example.com/api/v1/me/"]
    record("Isolation and access", "Production settings: check --deploy, cookies and headers",
           outcome="check --deploy: no issues; Secure+HttpOnly session cookie, Secure CSRF cookie, HSTS 1y preload, "
                   "nosniff, X-Frame-Options DENY, Referrer-Policy same-origin, http->https 301")


def test_revoked_key_is_refused_everywhere(key_client, alice, org_a):
    client = key_client("admin")
    key = ApiKey.objects.filter(organization=org_a).latest("pk")
    assert client.get("/api/v1/me/").status_code == 200
    key.revoked_at = key.created_at
    key.save()
    assert client.get("/api/v1/me/").status_code == 401
