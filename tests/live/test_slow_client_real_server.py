"""A client that stops reading, on the real server (gunicorn + uvicorn, real sockets): once a live
event has waited LIVE_MAX_SEND_SECONDS for its socket the server drops it (4008, or a cut connection
when not even the close frame fits), while a client reading the same series gets every event. The
in-memory communicator of the other live tests has no socket buffer to fill: uvicorn holds a send
while the connection's write buffer is full, so a stuck client's consumer would wait there for good,
its queue on the server growing behind it.

The publisher keeps at most WINDOW events ahead of the reader, so the reader is never near the limit
however loaded the machine is (unpaced, a reader thread starved of CPU on a busy CI machine fell
8 MiB behind and was rightly dropped), while the stuck client falls ever further behind."""

import json
import socket
import threading
import time
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.benchmarks.server import live_server
from tests.factories import metric_series_with_key
from tests.workers import worker_env
from watchlists.live import publish_many

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

EVENTS, POINTS_PER_EVENT = 400, 2000  # ~60 KB each, ~24 MB in all: far past the kernel's buffers
SEND_SECONDS = 3  # LIVE_MAX_SEND_SECONDS for this server
WINDOW = 8  # events the publisher may be ahead of the reader: ~0.5 MB, which the socket buffers hold


def _socket(stack: ExitStack, base: str, key: str, series_id: int, *, read: bool):
    host, port = base.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    if not read:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # fill up quickly
    ws = stack.enter_context(connect(f"ws://{host}:{port}/ws/v1/live/", sock=sock, max_queue=None if read else 4,
                                     additional_headers={"Authorization": f"Bearer {key}"}, open_timeout=10))
    assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
    ws.send(json.dumps({"action": "subscribe", "series": [series_id]}))
    assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
    return ws


def test_a_client_that_stops_reading_is_dropped_and_a_reader_gets_everything():
    key, series = metric_series_with_key()
    row = [[1_700_000_000_000 + i, 1.5] for i in range(POINTS_PER_EVENT)]

    with live_server(worker_env(LIVE_MAX_SEND_SECONDS=SEND_SECONDS)) as base, ExitStack() as sockets:
        stuck = _socket(sockets, base, key, series.pk, read=False)
        reader = _socket(sockets, base, key, series.pk, read=True)
        seqs: list[int] = []
        other: list = []  # anything else the reader got: an error event, or why its socket ended

        def read_all():
            try:
                while len(seqs) < EVENTS:
                    event = json.loads(reader.recv(timeout=60))
                    (seqs if event["type"] == "metric" else other).append(event.get("seq", event))
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                other.append(repr(exc))

        thread = threading.Thread(target=read_all, daemon=True)
        thread.start()
        for i in range(EVENTS):
            deadline = time.monotonic() + 60
            while len(seqs) < i - WINDOW and thread.is_alive() and time.monotonic() < deadline:
                time.sleep(0.002)
            publish_many([(series.pk, {"type": "metric", "series": series.pk, "points": row, "n": i})])
        thread.join(120)
        # The reader lost nothing and was not dropped.
        assert seqs == list(range(1, EVENTS + 1)), f"reader got {len(seqs)} events, then {other[-3:]}"

        # The stuck client now reads what reached it; its socket must end well before all events.
        got, closed, deadline = [], None, time.monotonic() + 60
        while closed is None and time.monotonic() < deadline:
            try:
                got.append(json.loads(stuck.recv(timeout=5)))
            except ConnectionClosed as exc:
                closed = exc
            except TimeoutError:
                break
    assert closed is not None, f"the stuck client was never dropped ({len(got)} events delivered)"
    assert sum(e.get("type") == "metric" for e in got) < EVENTS
