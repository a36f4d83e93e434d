"""The audit log: sign-ins, keys, members and webhooks leave events that admins (only) can read,
over REST and GraphQL, never across organizations."""

import pytest

from accounts.models import AuditEvent, Role
from tests.conftest import client_for
from tests.factories import MembershipFactory, UserFactory
from tests.graphql.conftest import session_client
from tests.reliability.report import record

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


def _actions(org) -> list[str]:
    return list(AuditEvent.objects.filter(organization=org).order_by("pk").values_list("action", flat=True))


@pytest.fixture(autouse=True)
def _fresh_log(alice_client, carol_client):
    # The fixtures' force_login already wrote "login" events; each test starts from an empty log.
    AuditEvent.objects.all().delete()


def test_security_actions_are_recorded_with_who_and_what(alice_client, alice, org_a, client):
    client.post("/api/v1/auth/login/", {"email": "alice@example.com", "password": "wrong-password!"},
                content_type="application/json")
    client.post("/api/v1/auth/login/", {"email": "alice@example.com", "password": PASSWORD},
                content_type="application/json")
    key = alice_client.post("/api/v1/api-keys/", {"name": "ci", "scope": "ingest"}, format="json").json()
    alice_client.delete(f"/api/v1/api-keys/{key['id']}/")
    dave = UserFactory(email="dave@example.com")
    membership = MembershipFactory(user=dave, organization=org_a, role=Role.VIEWER)
    alice_client.patch(f"/api/v1/members/{membership.pk}/", {"role": "member"}, format="json")
    alice_client.delete(f"/api/v1/members/{membership.pk}/")
    invitation = alice_client.post("/api/v1/invitations/", {"email": "erin@example.com"}, format="json").json()
    alice_client.delete(f"/api/v1/invitations/{invitation['id']}/")
    hook = alice_client.post("/api/v1/webhooks/", {"url": "http://127.0.0.1:9/hook"}, format="json").json()
    alice_client.patch(f"/api/v1/webhooks/{hook['id']}/", {"description": "ops"}, format="json")
    alice_client.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret/")
    alice_client.delete(f"/api/v1/webhooks/{hook['id']}/")

    expected = ["login_failed", "login", "api_key.created", "api_key.revoked", "member.role_changed",
                "member.removed", "invitation.created", "invitation.deleted", "webhook.created", "webhook.updated",
                "webhook.secret_rotated", "webhook.deleted"]
    assert _actions(org_a) == expected, _actions(org_a)
    role_change = AuditEvent.objects.get(organization=org_a, action="member.role_changed")
    assert (role_change.actor_label, role_change.target_label, role_change.details) == (
        "alice@example.com", "dave@example.com", {"from": "viewer", "to": "member"})
    assert AuditEvent.objects.get(organization=org_a, action="login").ip == "127.0.0.1"
    # No secret ever lands in the log.
    assert "key" not in str(list(AuditEvent.objects.values_list("details", flat=True))).lower().replace(
        "api_key", "")
    record("Isolation and access", "Audit log records security actions",
           outcome=f"{len(expected)} of {len(expected)} actions recorded", cross_tenant_reads=0)


def test_a_failed_login_for_an_unknown_address_is_kept_for_operators_only(client, alice, org_a):
    client.post("/api/v1/auth/login/", {"email": "nobody@example.com", "password": "whatever-it-is"},
                content_type="application/json")
    event = AuditEvent.objects.get(action="login_failed")
    assert (event.organization_id, event.actor_label) == (None, "nobody@example.com")
    assert client_for(alice).get("/api/v1/audit-log/?action=login_failed").json()["results"] == []


def test_only_admins_read_the_audit_log(alice_client, bob_client, key_client, alice, bob, org_a, carol_client):
    alice_client.post("/api/v1/api-keys/", {"name": "ci"}, format="json")
    member = UserFactory(email="mo@example.com")
    MembershipFactory(user=member, organization=org_a, role=Role.MEMBER)
    answers = {
        "owner (session)": alice_client.get("/api/v1/audit-log/").status_code,
        "admin key": key_client("admin").get("/api/v1/audit-log/").status_code,
        "member": client_for(member).get("/api/v1/audit-log/").status_code,
        "viewer": bob_client.get("/api/v1/audit-log/").status_code,
        "read key": key_client("read").get("/api/v1/audit-log/").status_code,
    }
    assert answers == {"owner (session)": 200, "admin key": 200, "member": 403, "viewer": 403, "read key": 403}
    mine = alice_client.get("/api/v1/audit-log/?action=api_key.created").json()["results"]
    assert mine and all(e["action"] == "api_key.created" for e in mine)
    # Another organization's owner sees none of org A's events, listed or by id.
    assert carol_client.get("/api/v1/audit-log/").json()["results"] == []
    assert carol_client.get(f"/api/v1/audit-log/{mine[0]['id']}/").status_code == 404
    record("Isolation and access", "Audit log readable by admins only (REST)",
           outcome=", ".join(f"{who}: {code}" for who, code in answers.items()), cross_tenant_reads=0)


def test_audit_log_over_graphql_is_for_admins_of_the_organization(alice, bob, carol, org_a, alice_client):
    owner, viewer, other = session_client(alice), session_client(bob), session_client(carol)
    alice_client.post("/api/v1/api-keys/", {"name": "ci"}, format="json")
    query = "{ auditLog { totalCount results { action actorLabel targetLabel } } }"
    newest = owner.data(query)["auditLog"]["results"][0]
    assert (newest["action"], newest["actorLabel"]) == ("api_key.created", "alice@example.com")
    assert viewer.data(query)["auditLog"]["totalCount"] == 0
    assert other.data(query)["auditLog"]["results"] == [
        {"action": "login", "actorLabel": "carol@example.com", "targetLabel": "carol@example.com"}]
    record("Isolation and access", "Audit log readable by admins only (GraphQL)",
           outcome="owner sees events; viewer and other org see 0", cross_tenant_reads=0)
