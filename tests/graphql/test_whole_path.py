"""The whole path as a GraphQL client: watchlist and series, REST ingest, a rule, a backtest,
anomalies, feedback, and a live anomaly over graphql-transport-ws (real ASGI app, real Redis)."""

import json

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from accounts.services import create_api_key
from accounts.tenancy import actor_for_user
from anomalyhub.asgi import application
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory
from tests.waits import until_subscribed
from watchlists.live import series_group

from .conftest import GraphQLClient

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("clean_store")]
PROTOCOL = "graphql-transport-ws"
SUBSCRIPTION = "subscription($w: ID, $s: ID) { anomalies(watchlistId: $w, seriesId: $s) { id seriesId text ts } }"


@database_sync_to_async
def tenant(name):
    org = OrganizationFactory(name=f"Org {name}")
    user = UserFactory()
    MembershipFactory(user=user, organization=org, role="owner")
    _, key = create_api_key(actor=actor_for_user(user, org.pk), name="program", scope="admin")
    return org, key


def rest_ingest(key, series_id, points):
    response = Client().post(f"/api/v1/series/{series_id}/points/", data=json.dumps(points),
                             content_type="application/json", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201, response.content
    return response.json()


async def subscribe(key, **variables):
    ws = WebsocketCommunicator(application, "/graphql/", subprotocols=[PROTOCOL],
                               headers=[(b"authorization", f"Bearer {key}".encode())])
    connected, subprotocol = await ws.connect(timeout=5)
    assert connected and subprotocol == PROTOCOL
    await ws.send_json_to({"type": "connection_init", "payload": {}})
    assert (await ws.receive_json_from(timeout=5))["type"] == "connection_ack"
    await ws.send_json_to({"id": "1", "type": "subscribe",
                           "payload": {"query": SUBSCRIPTION, "variables": variables}})
    return ws


async def test_a_graphql_client_does_the_whole_path():
    org, key = await tenant("A")
    gql = GraphQLClient(Client(), {"Authorization": f"Bearer {key}"})
    call = sync_to_async(gql.data)

    series = (await call('mutation { createSeries(input: {symbol: "PUMP7", kind: "metric"}) '
                         '{ ... on SeriesType { id } } }'))["createSeries"]["id"]
    watchlist = (await call('mutation($s: [ID!]!) { createWatchlist(input: {name: "pumps", seriesIds: $s}) '
                            '{ ... on WatchlistType { id series { id } } } }', s=[series]))["createWatchlist"]
    assert watchlist["series"] == [{"id": series}]
    rule = (await call('mutation($w: ID) { createRule(input: {name: "hot", metrics: "value > 65", watchlistId: $w}) '
                       '{ __typename ... on RuleType { id } } }', w=watchlist["id"]))["createRule"]
    assert rule["__typename"] == "RuleType"

    stored = await sync_to_async(rest_ingest)(key, series, [{"ts": "2024-03-01T10:00:00Z", "value": 60},
                                                           {"ts": "2024-03-01T10:00:01Z", "value": 70}])
    assert stored["stored"] == 2

    backtest = (await call('mutation($id: ID!) { backtestRule(id: $id, start: "2024-03-01T00:00:00Z", '
                           'end: "2024-03-02T00:00:00Z") { ... on BacktestType { count rowsProcessed '
                           'anomalies { text seriesId } } } }', id=rule["id"]))["backtestRule"]
    assert backtest["count"] == 1 and backtest["rowsProcessed"] == 2
    assert backtest["anomalies"] == [{"text": "value > 65", "seriesId": series}]

    points = (await call('query($s: ID!) { points(seriesId: $s) { columns rows count truncated } }', s=series))
    assert points["points"]["columns"] == ["ts", "value"] and points["points"]["count"] == 2

    listed = (await call('query($w: ID) { anomalyList(filters: {watchlistId: $w, source: "rule"}) '
                         '{ totalCount results { id text series { symbol } rule { name } } } }',
                         w=watchlist["id"]))["anomalyList"]
    assert listed["totalCount"] == 1 and listed["results"][0]["rule"] == {"name": "hot"}
    anomaly = listed["results"][0]["id"]
    labelled = (await call('mutation($id: ID!) { labelAnomaly(id: $id, label: "confirmed") '
                           '{ ... on AnomalyType { feedback feedbackAt } } }', id=anomaly))["labelAnomaly"]
    assert labelled["feedback"] == "confirmed" and labelled["feedbackAt"]
    confirmed = await call('{ anomalyList(filters: {feedback: "confirmed"}) { totalCount } }')
    assert confirmed["anomalyList"]["totalCount"] == 1

    ws = await subscribe(key, w=watchlist["id"])
    await until_subscribed(series_group(int(series)))
    await sync_to_async(rest_ingest)(key, series, [{"ts": "2024-03-01T10:00:02Z", "value": 80}])
    message = await ws.receive_json_from(timeout=5)
    assert message["type"] == "next" and message["id"] == "1", message
    event = message["payload"]["data"]["anomalies"]
    assert event["seriesId"] == series and event["text"] == "value > 65"
    assert event["ts"].startswith("2024-03-01T10:00:02")
    await ws.send_json_to({"id": "1", "type": "complete"})
    await ws.disconnect()


async def test_subscribing_to_another_organizations_ids_is_refused():
    org_a, key_a = await tenant("A")
    _, key_b = await tenant("B")
    gql_a = GraphQLClient(Client(), {"Authorization": f"Bearer {key_a}"})
    series = (await sync_to_async(gql_a.data)('mutation { createSeries(input: {symbol: "S", kind: "metric"}) '
                                              '{ ... on SeriesType { id } } }'))["createSeries"]["id"]
    for variables in ({"s": series}, {"w": "999999"}, {"s": "abc"}):
        ws = await subscribe(key_b, **variables)
        message = await ws.receive_json_from(timeout=5)
        # graphql-transport-ws delivers resolver errors as a `next` without data (then `complete`).
        assert message["type"] == "next" and message["payload"]["data"] is None, message
        assert [e["extensions"]["code"] for e in message["payload"]["errors"]] == ["not_found"]
        assert (await ws.receive_json_from(timeout=5))["type"] == "complete"
        await ws.disconnect()


async def test_a_socket_without_credentials_is_rejected():
    ws = WebsocketCommunicator(application, "/graphql/", subprotocols=[PROTOCOL])
    connected, _ = await ws.connect(timeout=5)
    assert connected
    await ws.send_json_to({"type": "connection_init", "payload": {}})
    closed = await ws.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4403
