"""WebSockets receive garbage frames, oversized frames and floods: each gets the documented error
(docs/live-feed.md) or close code, the server stays up for other clients, and nothing is stored."""

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from anomalyhub.asgi import application
from detection import consumers
from detection.models import Anomaly
from tests.factories import metric_series_with_key
from tests.reliability.report import record
from watchlists.models import Series, Watchlist

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]
LIVE = "/ws/v1/live/"
GARBAGE = {
    "binary frame": {"bytes_data": b"\x00\xff\x10garbage"},
    "not JSON": {"text_data": "{subscribe"},
    "JSON but not an object": {"text_data": "[1, 2, 3]"},
    "unknown action": {"text_data": '{"action": "drop_tables"}'},
    "subscribe with wrong types": {"text_data": '{"action": "subscribe", "series": ["1; DROP"]}'},
    "subscribe to both and neither": {"text_data": '{"action": "subscribe", "series": [1], "watchlist": 2}'},
    "unsubscribe unknown": {"text_data": '{"action": "unsubscribe", "subscription": 999}'},
    "NUL and surrogates": {"text_data": '{"action": "\\u0000\\ud800"}'},
    "nested too deep": {"text_data": "[" * 16_000},
}


@database_sync_to_async
def _tenant():
    key, series = metric_series_with_key()
    return key, series.pk


@database_sync_to_async
def _stored():
    return Series.objects.count(), Watchlist.objects.count(), Anomaly.objects.count()


async def _opened(key, path=LIVE, **kwargs) -> WebsocketCommunicator:
    """A socket authenticated with the key, accepted by the server."""
    client = WebsocketCommunicator(application, path, headers=[(b"authorization", f"Bearer {key}".encode())],
                                   **kwargs)
    assert (await client.connect(timeout=5))[0]
    return client


async def _connect(key):
    client = await _opened(key)
    assert (await client.receive_json_from(timeout=5))["type"] == "welcome"
    return client


async def _graphql_socket(key, init: bool = True):
    client = await _opened(key, "/graphql/", subprotocols=["graphql-transport-ws"])
    if init:
        await client.send_json_to({"type": "connection_init", "payload": {}})
        assert (await client.receive_json_from(timeout=5))["type"] == "connection_ack"
    return client


async def test_garbage_frames_get_bad_request_errors_and_the_socket_stays_usable(clean_store):
    key, series_id = await _tenant()
    before = await _stored()
    client = await _connect(key)
    answers = {}
    for name, frame in GARBAGE.items():
        await client.send_to(**frame)
        reply = await client.receive_json_from(timeout=5)
        assert reply["type"] == "error" and reply["message"], (name, reply)
        answers[name] = reply["code"]
    await client.send_json_to({"action": "subscribe", "series": [series_id]})
    assert (await client.receive_json_from(timeout=5))["type"] == "subscribed"  # still serving
    await client.disconnect()
    assert await _stored() == before
    assert set(answers.values()) <= {"bad_request", "not_found"}
    record("Bad input", "WebSocket live feed: garbage frames", frames=len(GARBAGE),
           outcome=", ".join(sorted({f"{code}×{list(answers.values()).count(code)}" for code in answers.values()})),
           socket_still_usable=True, stored_changed=0)


async def test_an_oversized_frame_is_refused_and_closed_with_1009(clean_store):
    key, _ = await _tenant()
    before = await _stored()
    client = await _connect(key)
    await client.send_to(text_data='{"action": "ping", "echo": "' + "x" * (consumers.MAX_FRAME_BYTES + 1) + '"}')
    reply = await client.receive_json_from(timeout=5)
    closed = await client.receive_output(timeout=5)
    assert reply["code"] == "frame_too_large" and str(consumers.MAX_FRAME_BYTES) in reply["message"]
    assert closed == {"type": "websocket.close", "code": consumers.CLOSE_TOO_BIG, "reason": consumers.REASON_TOO_BIG}
    assert await _stored() == before
    record("Bad input", f"WebSocket live feed: frame over {consumers.MAX_FRAME_BYTES} bytes",
           outcome=f"error frame_too_large, close {consumers.CLOSE_TOO_BIG}", stored_changed=0)


async def test_a_flood_is_cut_off_with_4029_and_other_clients_are_unaffected(clean_store):
    key, series_id = await _tenant()
    before = await _stored()
    flooder, neighbour = await _connect(key), await _connect(key)
    replies = []
    for i in range(consumers.FLOOD_MESSAGES + 1):
        await flooder.send_json_to({"action": "ping", "echo": i})
        replies.append(await flooder.receive_json_from(timeout=5))
    closed = await flooder.receive_output(timeout=5)
    assert [r["type"] for r in replies[:-1]] == ["pong"] * consumers.FLOOD_MESSAGES
    assert replies[-1]["code"] == "rate_limited"
    assert closed == {"type": "websocket.close", "code": consumers.CLOSE_FLOOD, "reason": consumers.REASON_FLOOD}
    await neighbour.send_json_to({"action": "ping", "echo": "still here"})
    assert (await neighbour.receive_json_from(timeout=5))["echo"] == "still here"
    await neighbour.disconnect()
    assert await _stored() == before
    record("Bad input", f"WebSocket live feed: flood of {consumers.FLOOD_MESSAGES + 1} messages in "
           f"{consumers.FLOOD_WINDOW:.0f} s", outcome=f"{consumers.FLOOD_MESSAGES} answered, then rate_limited + "
           f"close {consumers.CLOSE_FLOOD}; neighbour unaffected", stored_changed=0)


async def test_graphql_socket_garbage_is_closed_with_a_protocol_error(clean_store):
    key, _ = await _tenant()
    before = await _stored()
    codes = {}
    for name, frame in {"not JSON": {"text_data": "{nope"}, "unknown message type": {"text_data": '{"type": "x"}'},
                        "binary frame": {"bytes_data": b"\x00\x01"},
                        "nested too deep": {"text_data": "[" * 60_000}}.items():
        client = await _graphql_socket(key, init=False)
        await client.send_to(**frame)
        closed = await client.receive_output(timeout=5)
        assert closed["type"] == "websocket.close" and 4400 <= closed["code"] < 4500, (name, closed)
        codes[name] = closed["code"]
    assert await _stored() == before
    record("Bad input", "WebSocket GraphQL: garbage frames",
           outcome=", ".join(f"{n}: close {c}" for n, c in codes.items()), stored_changed=0)


async def test_graphql_socket_floods_and_oversized_frames_are_closed(clean_store):
    from anomalyhub import graphql_view as gv

    key, _ = await _tenant()
    before = await _stored()
    flooder = await _graphql_socket(key)
    pongs = 0
    for _ in range(gv.WS_FLOOD_MESSAGES - 1):  # connection_init was the first message of the window
        await flooder.send_json_to({"type": "ping"})
        pongs += (await flooder.receive_json_from(timeout=5))["type"] == "pong"
    await flooder.send_json_to({"type": "ping"})
    flood_close = await flooder.receive_output(timeout=5)
    big = await _graphql_socket(key)
    await big.send_json_to({"id": "1", "type": "subscribe", "payload": {
        "query": "subscription { anomalies { id } }" + " " * gv.WS_MAX_FRAME_BYTES}})
    big_close = await big.receive_output(timeout=5)
    assert pongs == gv.WS_FLOOD_MESSAGES - 1
    assert (flood_close["code"], flood_close["reason"].split(":")[0]) == (gv.CLOSE_FLOOD, "Too many messages")
    assert (big_close["code"], big_close["reason"].split(":")[0]) == (gv.CLOSE_TOO_BIG, "Frame too large")
    assert await _stored() == before
    record("Bad input", "WebSocket GraphQL: flood and frame over 64 KiB",
           outcome=f"flood: {pongs} pongs then close {gv.CLOSE_FLOOD}; oversized: close {gv.CLOSE_TOO_BIG}",
           stored_changed=0)
