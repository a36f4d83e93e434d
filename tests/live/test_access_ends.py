"""Open sockets close when the access they were opened with ends (accounts.socket_access): over
the real ASGI app and the real Redis channel layer, for the live feed and the GraphQL socket."""


import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.sessions.models import Session
from django.test import Client

from accounts import services
from accounts.models import ApiKey, Membership
from accounts.tenancy import actor_for_user
from anomalyhub.asgi import application
from detection.consumers import REASON_ACCESS_ENDED
from tests.factories import MembershipFactory, OrganizationFactory, SeriesFactory, UserFactory
from tests.graphql.ws_isolation import PROTOCOL
from tests.waits import until_subscribed
from watchlists.live import series_group

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]
PASSWORD = "a long and good password 1"
ORIGIN = (b"origin", b"http://localhost")


@database_sync_to_async
def team():
    org = OrganizationFactory()
    owner, member = UserFactory(), UserFactory()
    for user in (owner, member):
        user.set_password(PASSWORD)
        user.save()
    MembershipFactory(user=owner, organization=org, role="owner")
    membership = MembershipFactory(user=member, organization=org, role="member")
    key, raw = services.create_api_key(actor=actor_for_user(owner, org.pk), name="k", scope="read")
    _, other_raw = services.create_api_key(actor=actor_for_user(owner, org.pk), name="other", scope="read")
    series = SeriesFactory(organization=org, kind="metric", exchange="", bar_seconds=None)
    return {"org": org, "series": series, "owner": owner, "member": member, "membership": membership, "key": key, "raw": raw,
            "other_raw": other_raw}


@database_sync_to_async
def by_owner(t, service, **kwargs):
    return service(actor=actor_for_user(t["owner"], t["org"].pk), **kwargs)


@database_sync_to_async
def change_person(user, password=None, **fields):
    if password is not None:
        user.set_password(password)
    for name, value in fields.items():
        setattr(user, name, value)
    user.save()


def signed_in(user) -> Client:
    client = Client()
    assert client.login(email=user.email, password=PASSWORD)
    return client


async def live(headers) -> WebsocketCommunicator:
    client = WebsocketCommunicator(application, "/ws/v1/live/", headers=headers)
    assert (await client.connect(timeout=5))[0]
    assert (await client.receive_json_from(timeout=5))["type"] == "welcome"
    return client


def with_key(raw):
    return [(b"authorization", f"Bearer {raw}".encode())]


def with_session(client: Client):
    return [(b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()), ORIGIN]


async def assert_revoked(client: WebsocketCommunicator):
    error = await client.receive_json_from(timeout=5)
    assert error["type"] == "error" and error["code"] == "access_revoked", error
    closed = await client.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4401, "reason": REASON_ACCESS_ENDED}


async def assert_still_open(client: WebsocketCommunicator, quiet_for=0.5):
    """Nothing arrived (no revocation), and the socket still answers; then it is closed by us."""
    assert await client.receive_nothing(timeout=quiet_for)
    await client.send_json_to({"action": "ping"})
    assert (await client.receive_json_from(timeout=5))["type"] == "pong"
    await client.disconnect()


async def test_a_revoked_key_closes_its_sockets_and_only_those():
    t = await team()
    revoked, kept = await live(with_key(t["raw"])), await live(with_key(t["other_raw"]))
    await by_owner(t, services.revoke_api_key, key_id=t["key"].pk)
    await assert_revoked(revoked)
    await assert_still_open(kept)


async def test_a_deleted_key_closes_its_sockets():
    t = await team()
    client = await live(with_key(t["raw"]))
    await database_sync_to_async(ApiKey.objects.filter(pk=t["key"].pk).delete)()
    await assert_revoked(client)


@pytest.mark.parametrize("change", ["removed", "role"])
async def test_a_removed_or_changed_membership_closes_that_persons_sockets(change):
    t = await team()
    member = await live(with_session(await database_sync_to_async(signed_in)(t["member"])))
    owner = await live(with_session(await database_sync_to_async(signed_in)(t["owner"])))
    if change == "removed":
        await by_owner(t, services.remove_member, membership_id=t["membership"].pk)
    else:
        await by_owner(t, services.change_role, membership_id=t["membership"].pk, role="viewer")
    await assert_revoked(member)
    await assert_still_open(owner)


async def test_signing_out_closes_that_sessions_sockets_not_the_persons_others():
    t = await team()
    laptop = await database_sync_to_async(signed_in)(t["member"])
    phone = await database_sync_to_async(signed_in)(t["member"])
    laptop_socket, phone_socket = await live(with_session(laptop)), await live(with_session(phone))
    response = await database_sync_to_async(laptop.post)("/api/v1/auth/logout/")
    assert response.status_code == 204
    await assert_revoked(laptop_socket)
    await assert_still_open(phone_socket)


async def test_a_ticket_from_a_session_ends_with_it():
    t = await team()
    browser = await database_sync_to_async(signed_in)(t["member"])
    response = await database_sync_to_async(browser.post)("/api/v1/live/tickets/")
    ticket = response.json()["ticket"]
    client = WebsocketCommunicator(application, f"/ws/v1/live/?ticket={ticket}")
    assert (await client.connect(timeout=5))[0]
    await client.receive_json_from(timeout=5)
    await database_sync_to_async(browser.post)("/api/v1/auth/logout/")
    await assert_revoked(client)


async def test_a_new_password_or_deactivation_closes_the_persons_sockets_a_sign_in_does_not():
    t = await team()
    client = await live(with_session(await database_sync_to_async(signed_in)(t["member"])))
    await database_sync_to_async(signed_in)(t["member"])  # signing in elsewhere saves last_login
    assert await client.receive_nothing(timeout=0.5)

    await change_person(t["member"], password="another long password 2")
    await assert_revoked(client)

    owner = await live(with_session(await database_sync_to_async(signed_in)(t["owner"])))

    await change_person(t["owner"], is_active=False)
    await assert_revoked(owner)


async def test_a_lost_revocation_is_caught_by_the_periodic_recheck(settings):
    """A bulk UPDATE sends no signal, like a revocation published while Redis was away."""
    settings.WS_ACCESS_RECHECK_SECONDS = 0.3
    t = await team()
    key_socket = await live(with_key(t["raw"]))
    member_socket = await live(with_session(await database_sync_to_async(signed_in)(t["member"])))
    kept = await live(with_session(await database_sync_to_async(signed_in)(t["owner"])))
    await database_sync_to_async(ApiKey.objects.filter(pk=t["key"].pk).update)(revoked_at="2026-01-01T00:00Z")
    await database_sync_to_async(Membership.objects.filter(pk=t["membership"].pk).update)(role="viewer")
    await assert_revoked(key_socket)
    await assert_revoked(member_socket)
    browser = await database_sync_to_async(signed_in)(t["owner"])
    session_socket = await live(with_session(browser))
    await database_sync_to_async(Session.objects.filter(pk=browser.session.session_key).delete)()
    await assert_revoked(session_socket)  # its session is gone, though the person and role are not
    await assert_still_open(kept, quiet_for=1.0)  # re-checked three times, still valid


async def test_the_graphql_socket_closes_too():
    t = await team()
    client = WebsocketCommunicator(application, "/graphql/", subprotocols=[PROTOCOL], headers=with_key(t["raw"]))
    assert (await client.connect(timeout=5))[0]
    await client.send_json_to({"type": "connection_init", "payload": {}})
    assert (await client.receive_json_from(timeout=5))["type"] == "connection_ack"
    await client.send_json_to({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription($s: ID) { anomalies(seriesId: $s) { id } }", "variables": {"s": t["series"].pk}}})
    await until_subscribed(series_group(t["series"].pk))  # the subscription is listening
    await by_owner(t, services.revoke_api_key, key_id=t["key"].pk)
    closed = await client.receive_output(timeout=5)
    while closed["type"] != "websocket.close":  # a subscription's frames may come first
        closed = await client.receive_output(timeout=5)
    assert closed["code"] == 4403
