"""Tenant isolation over every WebSocket route: each route needs an isolation check here, so a
new socket route fails this test until someone proves it keeps organizations apart."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import create_api_key
from accounts.tenancy import actor_for_user
from anomalyhub.asgi import application
from anomalyhub.routing import websocket_urlpatterns
from tests.factories import (
    MembershipFactory,
    OrganizationFactory,
    SeriesFactory,
    UserFactory,
    WatchlistFactory,
)
from tests.graphql.ws_isolation import check_graphql

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("close_executor_connections")]


@database_sync_to_async
def two_tenants():
    org_a, org_b = OrganizationFactory(), OrganizationFactory()
    owner_b = UserFactory()
    MembershipFactory(user=owner_b, organization=org_b, role="owner")
    series_a = SeriesFactory(organization=org_a, kind="metric", exchange="", bar_seconds=None)
    watchlist_a = WatchlistFactory(organization=org_a)
    _, key_b = create_api_key(actor=actor_for_user(owner_b, org_b.pk), name="b", scope="admin")
    return {"series": series_a.pk, "watchlist": watchlist_a.pk, "key_b": key_b}


async def check_live(path, ids):
    anonymous = WebsocketCommunicator(application, path)
    assert (await anonymous.connect(timeout=5))[0]  # accepted, then closed: browsers can read the code
    assert (await anonymous.receive_output(timeout=5))["code"] == 4401
    client = WebsocketCommunicator(application, path, headers=[(b"authorization", f"Bearer {ids['key_b']}".encode())])
    assert (await client.connect(timeout=5))[0]
    await client.receive_json_from(timeout=5)
    for request in ({"series": [ids["series"]]}, {"watchlist": ids["watchlist"]}):
        await client.send_json_to({"action": "subscribe", **request})
        reply = await client.receive_json_from(timeout=5)
        assert reply["type"] == "error" and reply["code"] == "not_found", reply
    await client.disconnect()


CHECKS = {"ws/v1/live/": check_live, "graphql/": check_graphql}


def test_every_websocket_route_has_an_isolation_check():
    routes = {str(p.pattern) for p in websocket_urlpatterns}
    assert routes <= set(CHECKS), f"add an isolation check for {routes - set(CHECKS)}"


@pytest.mark.parametrize("route", sorted(CHECKS))
async def test_websocket_route_keeps_organizations_apart(route, clean_store):
    ids = await two_tenants()
    await CHECKS[route]("/" + route, ids)


async def test_access_ending_in_one_organization_closes_nothing_in_another(clean_store):
    """A person in organizations A and B, removed from A: their A socket closes (accounts.socket_access),
    their B socket stays; A's key revoked and A deleted close no socket of B."""
    from accounts import services
    from accounts.tenancy import issue_ticket

    @database_sync_to_async
    def setup():
        org_a, org_b = OrganizationFactory(), OrganizationFactory()
        person, owner_a = UserFactory(), UserFactory()
        MembershipFactory(user=owner_a, organization=org_a, role="owner")
        in_a = MembershipFactory(user=person, organization=org_a, role="member")
        MembershipFactory(user=person, organization=org_b, role="member")
        owner = actor_for_user(owner_a, org_a.pk)
        key_a, raw_a = create_api_key(actor=owner, name="a", scope="read")
        paths = {"person in A": (f"/ws/v1/live/?ticket={issue_ticket(actor_for_user(person, org_a.pk))}", []),
                 "person in B": (f"/ws/v1/live/?ticket={issue_ticket(actor_for_user(person, org_b.pk))}", []),
                 "A's key": ("/ws/v1/live/", [(b"authorization", f"Bearer {raw_a}".encode())])}
        return org_a, owner, in_a, key_a, paths

    org_a, owner, in_a, key_a, paths = await setup()
    sockets = {}
    for name, (path, headers) in paths.items():
        sockets[name] = WebsocketCommunicator(application, path, headers=headers)
        assert (await sockets[name].connect(timeout=5))[0]
        assert (await sockets[name].receive_json_from(timeout=5))["type"] == "welcome"
    await database_sync_to_async(services.remove_member)(actor=owner, membership_id=in_a.pk)
    await database_sync_to_async(services.revoke_api_key)(actor=owner, key_id=key_a.pk)
    for name in ("person in A", "A's key"):
        assert (await sockets[name].receive_json_from(timeout=5))["code"] == "access_revoked"
        assert (await sockets[name].receive_output(timeout=5))["code"] == 4401
    await database_sync_to_async(org_a.delete)()
    kept = sockets["person in B"]
    assert await kept.receive_nothing(timeout=0.5)
    await kept.send_json_to({"action": "ping"})
    assert (await kept.receive_json_from(timeout=5))["type"] == "pong"
    await kept.disconnect()


async def test_a_watchlist_change_in_one_organization_reaches_no_socket_of_another(clean_store):
    """Live subscriptions follow their watchlist (group live.watchlist.<id>); A's changes say nothing to B."""
    from accounts.tenancy import system_actor
    from watchlists.services import save_watchlist

    @database_sync_to_async
    def setup():
        org_a, org_b = OrganizationFactory(), OrganizationFactory()
        owner_b = UserFactory()
        MembershipFactory(user=owner_b, organization=org_b, role="owner")
        a1, a2 = (SeriesFactory(organization=org_a, kind="metric", exchange="", bar_seconds=None) for _ in range(2))
        watchlist_a = save_watchlist(actor=system_actor(org_a.pk), name="a", series_ids=[a1.pk])
        watchlist_b = save_watchlist(actor=system_actor(org_b.pk), name="b", series_ids=[
            SeriesFactory(organization=org_b, kind="metric", exchange="", bar_seconds=None).pk])
        _, key_b = create_api_key(actor=actor_for_user(owner_b, org_b.pk), name="b", scope="read")
        return org_a, watchlist_a, [a1.pk, a2.pk], watchlist_b, key_b

    org_a, watchlist_a, a_ids, watchlist_b, key_b = await setup()
    client = WebsocketCommunicator(application, "/ws/v1/live/", headers=[(b"authorization", f"Bearer {key_b}".encode())])
    assert (await client.connect(timeout=5))[0]
    await client.receive_json_from(timeout=5)
    await client.send_json_to({"action": "subscribe", "watchlist": watchlist_b.pk})
    assert (await client.receive_json_from(timeout=5))["type"] == "subscribed"
    await database_sync_to_async(save_watchlist)(actor=system_actor(org_a.pk), watchlist=watchlist_a, series_ids=a_ids)
    await database_sync_to_async(watchlist_a.delete)()
    assert await client.receive_nothing(timeout=0.5)
    await client.disconnect()
