"""Organizations, roles, memberships, invitations and API keys over REST."""

import pytest
from django.core import mail
from rest_framework.test import APIClient

from accounts.models import ApiKey, Membership, Role
from tests.conftest import client_for
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_user_in_several_orgs_picks_one_with_header_or_switch(alice, org_a):
    other = OrganizationFactory(name="Second")
    MembershipFactory(user=alice, organization=other, role=Role.VIEWER)
    client = client_for(alice)
    assert client.get("/api/v1/me/").json()["organization"]["id"] == org_a.pk
    assert client.get("/api/v1/me/", HTTP_X_ORGANIZATION=other.slug).json()["role"] == "viewer"
    client.post(f"/api/v1/organizations/{other.pk}/switch/")
    assert client.get("/api/v1/me/").json()["organization"]["id"] == other.pk
    names = {o["name"] for o in client.get("/api/v1/organizations/").json()["results"]}
    assert names == {"Org A", "Second"}


def test_viewer_cannot_rename_or_delete_org(bob_client, org_a):
    assert bob_client.patch(f"/api/v1/organizations/{org_a.pk}/", {"name": "x"}, format="json").status_code == 403
    assert bob_client.delete(f"/api/v1/organizations/{org_a.pk}/").status_code == 403


def test_owner_renames_and_deletes_org(alice_client, org_a):
    r = alice_client.patch(f"/api/v1/organizations/{org_a.pk}/", {"name": "Renamed"}, format="json")
    assert r.status_code == 200 and r.json()["name"] == "Renamed"
    assert alice_client.delete(f"/api/v1/organizations/{org_a.pk}/").status_code == 204


def test_last_owner_cannot_leave_or_be_demoted(alice_client, alice, org_a):
    mine = Membership.objects.get(user=alice, organization=org_a)
    r = alice_client.delete(f"/api/v1/members/{mine.pk}/")
    assert r.status_code == 409 and "owner" in r.json()["error"]["message"]
    r = alice_client.patch(f"/api/v1/members/{mine.pk}/", {"role": "admin"}, format="json")
    assert r.status_code == 409


def test_owner_can_leave_when_another_owner_exists(alice_client, alice, bob, org_a):
    Membership.objects.filter(user=bob).update(role=Role.OWNER)
    mine = Membership.objects.get(user=alice, organization=org_a)
    assert alice_client.delete(f"/api/v1/members/{mine.pk}/").status_code == 204


def test_viewer_may_leave_but_not_remove_others(bob_client, bob, alice, org_a):
    alice_m = Membership.objects.get(user=alice)
    assert bob_client.delete(f"/api/v1/members/{alice_m.pk}/").status_code == 403
    bob_m = Membership.objects.get(user=bob)
    assert bob_client.delete(f"/api/v1/members/{bob_m.pk}/").status_code == 204


def test_admin_cannot_grant_ownership(org_a, bob):
    admin = UserFactory()
    MembershipFactory(user=admin, organization=org_a, role=Role.ADMIN)
    bob_m = Membership.objects.get(user=bob)
    r = client_for(admin).patch(f"/api/v1/members/{bob_m.pk}/", {"role": "owner"}, format="json")
    assert r.status_code == 403
    r = client_for(admin).patch(f"/api/v1/members/{bob_m.pk}/", {"role": "member"}, format="json")
    assert r.status_code == 200 and r.json()["role"] == "member"


def test_invitation_by_email_and_acceptance(alice_client, org_a, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        r = alice_client.post("/api/v1/invitations/", {"email": "frank@example.com", "role": "member"}, format="json")
    assert r.status_code == 201, r.content
    link = next(line for line in mail.outbox[-1].body.splitlines() if "token=" in line)
    token = link.split("token=")[1].strip()
    frank = UserFactory(email="frank@example.com")
    r = client_for(frank).post("/api/v1/invitations/accept/", {"token": token}, format="json")
    assert r.status_code == 201 and r.json()["role"] == "member"
    # Used once only.
    r = client_for(frank).post("/api/v1/invitations/accept/", {"token": token}, format="json")
    assert r.status_code == 404


def test_invitation_token_of_other_org_is_bound_to_its_email(alice_client, carol,
                                                             django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post("/api/v1/invitations/", {"email": "someone@example.com"}, format="json")
    token = mail.outbox[-1].body.split("token=")[1].split()[0]
    r = client_for(carol).post("/api/v1/invitations/accept/", {"token": token}, format="json")
    assert r.status_code == 403


def test_member_cannot_manage_keys_or_invite(org_a):
    member = UserFactory()
    MembershipFactory(user=member, organization=org_a, role=Role.MEMBER)
    client = client_for(member)
    assert client.get("/api/v1/api-keys/").status_code == 403
    assert client.post("/api/v1/api-keys/", {"name": "x"}, format="json").status_code == 403
    assert client.post("/api/v1/invitations/", {"email": "y@example.com"}, format="json").status_code == 403


def test_api_key_revocation_and_last_used(alice_client, key_client):
    client = key_client("read")
    assert client.get("/api/v1/me/").status_code == 200
    key = ApiKey.objects.get(name="read key")
    assert key.last_used_at is not None
    assert alice_client.delete(f"/api/v1/api-keys/{key.pk}/").status_code == 204
    r = client.get("/api/v1/me/")
    assert r.status_code == 401 and r.json()["error"]["code"] == "authentication_failed"


def test_key_scopes_limit_actions(key_client):
    read = key_client("read")
    assert read.get("/api/v1/members/").status_code == 200
    assert read.post("/api/v1/api-keys/", {"name": "x"}, format="json").status_code == 403
    admin = key_client("admin")
    assert admin.post("/api/v1/api-keys/", {"name": "x"}, format="json").status_code == 201
    assert admin.post("/api/v1/organizations/", {"name": "x"}, format="json").status_code == 403


def test_malformed_or_unknown_bearer_key_is_401():
    for header in ("Bearer ahk_nothing", "Bearer ahk_abcdefgh_wrong", "Bearer"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        r = client.get("/api/v1/me/")
        assert r.status_code == 401, header
        assert r.json()["error"]["code"] == "authentication_failed"


def test_user_without_org_gets_guidance(db):
    loner = UserFactory()
    r = client_for(loner).get("/api/v1/members/")
    assert r.status_code == 403 and "create one" in r.json()["error"]["message"]


def test_bootstrap_org_is_idempotent_and_prints_key_last(capsys):
    from django.core.management import call_command

    call_command("bootstrap_org", email="ops@example.com", password="long-password", org="Ops")
    first = capsys.readouterr().out.strip().splitlines()[-1]
    call_command("bootstrap_org", email="ops@example.com", password="long-password", org="Ops")
    second = capsys.readouterr().out.strip().splitlines()[-1]
    assert first.startswith("ahk_") and second.startswith("ahk_") and first != second
    assert Membership.objects.filter(user__email="ops@example.com").count() == 1
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {second}")
    assert client.get("/api/v1/me/").json()["scope"] == "admin"
