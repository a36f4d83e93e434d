"""The fan-out's shortcuts: one decoding and one JSON encoding per published event, not per subscriber."""

import json

from anomalyhub.channel_layer import RedisPubSubLayer
from detection.consumers import LiveConsumer, encoded_head


def test_each_subscription_gets_the_text_send_json_would_have_sent():
    event = {"type": "anomaly", "series": 3, "id": 9, "observed": {"price": 500.0}, "text": "price > 200",
             "score": None}
    message = {"type": "live.event", "series": 3, "sent": 1.0, "event": event}
    head = encoded_head(message)
    for sub_id, seq in ((1, 1), (7, 12)):
        text = f'{head}"subscription": {sub_id}, "seq": {seq}}}'
        assert text == json.dumps({**event, "subscription": sub_id, "seq": seq})
    assert encoded_head(message) is head  # encoded once, kept on the message the consumers share
    assert encoded_head({"event": {}}) + '"seq": 1}' == json.dumps({"seq": 1})


def test_one_publish_is_decoded_once_for_every_consumer_of_the_process():
    layer = RedisPubSubLayer(hosts=["redis://127.0.0.1:6399/0"])  # decoding only: never connects
    raw = layer.serialize({"type": "live.event", "series": 1, "event": {"type": "tick"}})
    first = layer.deserialize(raw)
    assert layer.deserialize(raw) is first
    again = bytes(bytearray(raw))  # the same bytes from another PUBLISH: decoded on its own
    assert layer.deserialize(again) == first and layer.deserialize(again) is not first
    big = layer.serialize({"type": "live.event", "series": 1, "event": {"points": [[1.5] * 8] * 5000}})
    assert layer.deserialize(big) is not layer.deserialize(big)  # a big batch is not kept in memory


async def test_events_reach_the_socket_without_a_hop_to_the_sync_thread(monkeypatch):
    async def hop():
        raise AssertionError("channels' dispatch hops to the sync thread for every event")

    monkeypatch.setattr("channels.consumer.aclose_old_connections", hop)
    consumer = LiveConsumer()
    consumer.channel_layer = None
    consumer.max_backlog, consumer.max_send_seconds = 1000, 10  # as connect() sets
    consumer.subscriptions = {1: {"series": {5}, "seq": 0}, 2: {"series": {5, 6}, "seq": 4}}
    sent = []

    async def send(text_data=None, bytes_data=None, close=False):
        sent.append(text_data)

    consumer.send = send
    await consumer.dispatch({"type": "live.event", "series": 5, "sent": 0.0, "event": {"type": "tick", "series": 5}})
    assert sent == [json.dumps({"type": "tick", "series": 5, "subscription": 1, "seq": 1}),
                    json.dumps({"type": "tick", "series": 5, "subscription": 2, "seq": 5})]
