"""Who may do what, driven from accounts.tenancy's own tables: every role in ROLE_ACTIONS and every
API-key scope in SCOPE_ACTIONS tries one representative request per action. Allowed actions
succeed; refused ones answer 403 with the documented error and change nothing."""

import itertools

import pytest
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, Role
from accounts.services import create_api_key
from accounts.tenancy import ALL_ACTIONS, ROLE_ACTIONS, SCOPE_ACTIONS, actor_for_user
from tests.conftest import client_for
from tests.factories import MembershipFactory, SeriesFactory, UserFactory
from tests.reliability.report import record
from tests.watchlists.conftest import count_rows
from watchlists.models import Watchlist

pytestmark = pytest.mark.django_db
_names = itertools.count()


def _state(org, series) -> tuple:
    return (Watchlist.objects.filter(organization=org).count(), ApiKey.objects.filter(organization=org).count(),
            sorted(Membership.objects.filter(organization=org).values_list("role", flat=True)),
            count_rows("watchlists_metric", series.pk))


def _probe(client, action, org, series, target):
    """One request that needs exactly `action`."""
    if action == "view":
        return client.get("/api/v1/series/")
    if action == "change":
        return client.post("/api/v1/watchlists/", {"name": f"probe {next(_names)}"}, format="json")
    if action == "ingest":
        return client.post(f"/api/v1/series/{series.pk}/points/",
                           [{"ts": f"2024-01-02T10:{next(_names) % 60:02d}:00Z", "value": 1.5}], format="json")
    if action == "manage":
        return client.post("/api/v1/api-keys/", {"name": f"probe {next(_names)}"}, format="json")
    if action == "own":  # granting ownership is the owner's alone
        return client.patch(f"/api/v1/members/{target.pk}/", {"role": "owner"}, format="json")
    raise AssertionError(f"no probe for action {action!r}; add one")


def _assert_matrix(scenario, who_clients, allowed_of, org, series, target):
    """Every client tries every action: allowed ones succeed, the rest get 403 and change nothing."""
    refused, mismatches = 0, []
    for who, client in who_clients.items():
        for action in sorted(ALL_ACTIONS):
            before = _state(org, series)
            response = _probe(client, action, org, series, target)
            allowed = action in allowed_of[who]
            if allowed:
                ok = response.status_code in (200, 201)
                if action == "own":  # put the target back for the next caller
                    Membership.objects.filter(pk=target.pk).update(role=Role.VIEWER)
            else:
                refused += 1
                ok = (response.status_code == 403 and response.json()["error"]["code"] == "permission_denied"
                      and _state(org, series) == before)
            if not ok:
                mismatches.append(f"{who} {action}: {response.status_code} {response.content[:200]!r}")
    assert mismatches == []
    record("Isolation and access", scenario,
           outcome=f"{len(who_clients) * len(ALL_ACTIONS)} requests, {refused} refused with 403, data unchanged",
           mismatches=len(mismatches))


@pytest.fixture
def matrix_org(org_a):
    series = SeriesFactory(organization=org_a, symbol="pump-7.temp", kind="metric", exchange="", bar_seconds=None)
    target = MembershipFactory(organization=org_a, role=Role.VIEWER)
    owner = UserFactory(email="key-owner@matrix.example")
    MembershipFactory(user=owner, organization=org_a, role=Role.OWNER)
    return org_a, series, target, owner


def test_every_role_can_do_exactly_its_actions(matrix_org):
    org, series, target, _ = matrix_org
    clients = {}
    for role in ROLE_ACTIONS:
        user = UserFactory(email=f"{role}@matrix.example")
        MembershipFactory(user=user, organization=org, role=role)
        clients[role] = client_for(user)
    _assert_matrix("Role matrix (viewer/member/admin/owner x view/change/ingest/manage/own)",
                   clients, ROLE_ACTIONS, org, series, target)


def test_every_api_key_scope_is_enforced_whatever_its_creators_role(matrix_org):
    org, series, target, owner = matrix_org
    clients = {}
    for scope in SCOPE_ACTIONS:  # all created by an owner: the scope alone must limit them
        _, raw = create_api_key(actor=actor_for_user(owner, org.pk), name=f"{scope} key", scope=scope)
        clients[scope] = APIClient()
        clients[scope].credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    _assert_matrix("API-key scopes (read/ingest/admin) of an owner's keys", clients, SCOPE_ACTIONS, org, series, target)


def test_member_cannot_manage_keys_or_members(matrix_org):
    org, series, target, _ = matrix_org
    member = UserFactory(email="plain@matrix.example")
    MembershipFactory(user=member, organization=org, role=Role.MEMBER)
    client = client_for(member)
    key = ApiKey.objects.create(organization=org, name="theirs", prefix="ahk_member01", key_hash="x")
    answers = [client.get("/api/v1/api-keys/").status_code, client.delete(f"/api/v1/api-keys/{key.pk}/").status_code,
               client.patch(f"/api/v1/members/{target.pk}/", {"role": "admin"}, format="json").status_code,
               client.delete(f"/api/v1/members/{target.pk}/").status_code,
               client.post("/api/v1/invitations/", {"email": "x@example.com"}, format="json").status_code]
    assert answers == [403] * 5
    key.refresh_from_db()
    assert key.revoked_at is None and Membership.objects.get(pk=target.pk).role == Role.VIEWER
