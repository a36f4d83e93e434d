"""Isolation check of the graphql/ WebSocket route, in the shape tests/test_cross_tenant_ws.py's
CHECKS expects: `check_graphql(path, ids)` with org A's series/watchlist and org B's admin key."""

from channels.testing import WebsocketCommunicator

from anomalyhub.asgi import application

PROTOCOL = "graphql-transport-ws"
QUERY = "subscription($w: ID, $s: ID) { anomalies(watchlistId: $w, seriesId: $s) { id } }"


async def check_graphql(path, ids):
    anonymous = WebsocketCommunicator(application, path, subprotocols=[PROTOCOL])
    assert (await anonymous.connect(timeout=5))[0]
    await anonymous.send_json_to({"type": "connection_init", "payload": {}})
    closed = await anonymous.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and closed["code"] == 4403
    for variables in ({"s": ids["series"]}, {"w": ids["watchlist"]}):
        client = WebsocketCommunicator(application, path, subprotocols=[PROTOCOL],
                                       headers=[(b"authorization", f"Bearer {ids['key_b']}".encode())])
        assert (await client.connect(timeout=5))[0]
        await client.send_json_to({"type": "connection_init", "payload": {}})
        assert (await client.receive_json_from(timeout=5))["type"] == "connection_ack"
        await client.send_json_to({"id": "1", "type": "subscribe", "payload": {"query": QUERY, "variables": variables}})
        reply = await client.receive_json_from(timeout=5)
        assert reply["payload"]["data"] is None, reply
        assert [e["extensions"]["code"] for e in reply["payload"]["errors"]] == ["not_found"], reply
        await client.disconnect()
