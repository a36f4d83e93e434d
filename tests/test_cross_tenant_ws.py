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

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


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
    connected, code = await anonymous.connect(timeout=5)
    assert not connected and code == 4401
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
