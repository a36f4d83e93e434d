"""The fan-out's shortcut: one JSON encoding per event, not per subscription of a connection."""

import json

from detection.consumers import encoded_head


def test_each_subscription_gets_the_text_send_json_would_have_sent():
    event = {"type": "anomaly", "series": 3, "id": 9, "observed": {"price": 500.0}, "text": "price > 200",
             "score": None}
    message = {"type": "live.event", "series": 3, "sent": 1.0, "event": event}
    head = encoded_head(message)
    for sub_id, seq in ((1, 1), (7, 12)):
        text = f'{head}"subscription": {sub_id}, "seq": {seq}}}'
        assert text == json.dumps({**event, "subscription": sub_id, "seq": seq})
    assert encoded_head(message) is head  # encoded once, kept on the message
    assert encoded_head({"event": {}}) + '"seq": 1}' == json.dumps({"seq": 1})
