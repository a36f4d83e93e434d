"""A key acts for its organization with its scope, never as the person who made it (issue 22, 1-2).

The keys here are all made by alice, an owner: whatever she may do as a person (leave, change her
own subscriptions, replay her own deliveries), her keys may do only what their scope allows."""

import pytest
from rest_framework.test import APIClient

from accounts.models import AuditEvent, Membership, Role
from accounts.services import create_api_key
from accounts.tenancy import SCOPE_ACTIONS, actor_for_api_key, actor_for_user
from alerts.models import AlertSubscription, Notification
from tests.alerts.factories import subscription_for
from tests.factories import MembershipFactory, UserFactory
from tests.graphql.conftest import codes
from tests.graphql.conftest import key_client as graphql_key_client

pytestmark = pytest.mark.django_db
WEAK_SCOPES = ("read", "ingest")


def _rest_key(user, org, scope) -> APIClient:
    _, raw = create_api_key(actor=actor_for_user(user, org.pk), name=f"{scope} key", scope=scope)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


def _error_code(response) -> str:
    return response.json()["error"]["code"]


@pytest.fixture
def second_owner(org_a):
    """So that the last-owner rule is not what stops the removal below."""
    user = UserFactory(email="second-owner@example.com")
    MembershipFactory(user=user, organization=org_a, role=Role.OWNER)
    return user


@pytest.fixture
def alices_delivery(alice, org_a):
    sub = subscription_for(org_a, alice)
    return Notification.objects.create(organization=org_a, idempotency_key="own:1", subscription=sub, user=alice,
                                       channel="email", email=alice.email, due_at=sub.created_at,
                                       status=Notification.Status.SENT)


@pytest.mark.parametrize("scope", sorted(SCOPE_ACTIONS))
def test_a_key_actor_has_no_person(alice, org_a, scope):
    key, _ = create_api_key(actor=actor_for_user(alice, org_a.pk), name="k", scope=scope)
    actor = actor_for_api_key(key)
    assert actor.user is None and actor.user_id is None and not actor.owns(alice.pk) and not actor.owns(None)
    assert actor.credited_user == alice  # credited in created_by / the audit log, nothing more


@pytest.mark.parametrize("scope", sorted(SCOPE_ACTIONS))
def test_no_key_removes_the_owner_who_made_it(alice, org_a, second_owner, scope):
    membership = Membership.objects.get(user=alice, organization=org_a)
    response = _rest_key(alice, org_a, scope).delete(f"/api/v1/members/{membership.pk}/")
    assert response.status_code == 403 and _error_code(response) == "permission_denied"
    assert Membership.objects.filter(pk=membership.pk, role=Role.OWNER).exists()
    assert not AuditEvent.objects.filter(action__in=["member.left", "member.removed"]).exists()


@pytest.mark.parametrize("scope", sorted(SCOPE_ACTIONS))
def test_no_key_removes_its_maker_through_graphql(alice, org_a, second_owner, scope):
    membership = Membership.objects.get(user=alice, organization=org_a)
    body = graphql_key_client(alice, org_a, scope)("mutation($id: ID!) { removeMember(id: $id) }", id=membership.pk)
    assert codes(body) == ["permission_denied"]
    assert Membership.objects.filter(pk=membership.pk).exists()


def test_an_admin_key_still_removes_a_plain_member(alice, org_a, bob):
    membership = Membership.objects.get(user=bob, organization=org_a)
    assert _rest_key(alice, org_a, "admin").delete(f"/api/v1/members/{membership.pk}/").status_code == 204
    event = AuditEvent.objects.get(action="member.removed")
    assert event.actor_label.startswith("api-key:") and event.actor_user == alice


@pytest.mark.parametrize("scope", WEAK_SCOPES)
def test_weak_keys_cannot_create_or_change_their_makers_subscriptions_over_rest(alice, org_a, scope):
    sub = subscription_for(org_a, alice, enabled=True)
    client = _rest_key(alice, org_a, scope)
    created = client.post("/api/v1/alert-subscriptions/", {"name": "silence", "channels": ["email"]}, format="json")
    assert created.status_code == 403 and _error_code(created) == "permission_denied"
    disabled = client.patch(f"/api/v1/alert-subscriptions/{sub.pk}/", {"enabled": False}, format="json")
    deleted = client.delete(f"/api/v1/alert-subscriptions/{sub.pk}/")
    assert (disabled.status_code, deleted.status_code) == (404, 404)  # not theirs: not even visible
    assert client.get("/api/v1/alert-subscriptions/").json()["count"] == 0
    sub.refresh_from_db()
    assert sub.enabled and AlertSubscription.objects.filter(organization=org_a).count() == 1


@pytest.mark.parametrize("scope", WEAK_SCOPES)
def test_weak_keys_cannot_create_or_change_their_makers_subscriptions_over_graphql(alice, org_a, scope):
    sub = subscription_for(org_a, alice, enabled=True)
    client = graphql_key_client(alice, org_a, scope)
    created = client('mutation { createAlertSubscription(input: {name: "silence"}) { __typename } }')
    assert codes(created) == ["permission_denied"]
    disabled = client("mutation($id: ID!) { updateAlertSubscription(id: $id, input: {enabled: false}) "
                      "{ __typename } }", id=sub.pk)
    deleted = client("mutation($id: ID!) { deleteAlertSubscription(id: $id) }", id=sub.pk)
    assert codes(disabled) == codes(deleted) == ["not_found"]
    sub.refresh_from_db()
    assert sub.enabled and AlertSubscription.objects.filter(organization=org_a).count() == 1


@pytest.mark.parametrize("scope", WEAK_SCOPES)
def test_weak_keys_cannot_replay_deliveries(alice, org_a, alices_delivery, scope):
    response = _rest_key(alice, org_a, scope).post(f"/api/v1/deliveries/{alices_delivery.pk}/replay/")
    assert response.status_code in (403, 404) and "error" in response.json()
    body = graphql_key_client(alice, org_a, scope)("mutation($id: ID!) { replayDelivery(id: $id) { id } }",
                                                   id=alices_delivery.pk)
    assert codes(body) in (["not_found"], ["permission_denied"])
    assert Notification.objects.count() == 1


def test_webhook_deliveries_without_a_person_are_not_a_keys_own(alice, org_a):
    """A row with no user (a webhook delivery) must not match an actor with no user either."""
    now = Notification.objects.create(organization=org_a, idempotency_key="hook:1", channel="webhook",
                                      due_at="2024-01-01T00:00:00Z", status=Notification.Status.SENT)
    response = _rest_key(alice, org_a, "read").post(f"/api/v1/deliveries/{now.pk}/replay/")
    assert response.status_code in (403, 404)
    assert Notification.objects.count() == 1


def test_the_person_still_replays_their_own_and_an_admin_key_any(alice, org_a, alices_delivery, alice_client):
    assert alice_client.post(f"/api/v1/deliveries/{alices_delivery.pk}/replay/").status_code == 202
    assert _rest_key(alice, org_a, "admin").post(f"/api/v1/deliveries/{alices_delivery.pk}/replay/").status_code == 202
    assert Notification.objects.filter(replay_of=alices_delivery).count() == 2


@pytest.mark.parametrize("scope", ("read", "ingest", "admin"))
def test_any_key_previews_an_unsaved_subscription(alice, org_a, scope):
    # A preview stores nothing; a key without a person behind it once made it a 500 (the
    # subscription's owner was read from the key's absent user: found by the thorough fuzz).
    rest = _rest_key(alice, org_a, scope).post(
        "/api/v1/alert-subscriptions/replay/?start=2024-01-01T00:00:00Z&end=2024-01-02T00:00:00Z",
        {"name": "preview"}, format="json")
    assert rest.status_code == 200, rest.content
    client = graphql_key_client(alice, org_a, scope)
    dry = client('mutation { dryRunAlertSubscription(input: {name: "preview"}, start: "2024-01-01T00:00:00Z", '
                 'end: "2024-01-02T00:00:00Z") { __typename } }')
    assert "errors" not in dry, dry
    assert not AlertSubscription.objects.filter(organization=org_a).exists()
