"""HTTP through anomalyhub.asgi: Django's WSGI handler on a2wsgi's thread pool, under the real web
server (gunicorn + uvicorn workers). Whole responses and Django's request_finished go through, and
a streamed response (an export) goes at the client's pace and is closed once the client has gone."""

import asyncio
import socket
import time

from channels.testing import HttpCommunicator
from django.core.signals import request_finished

from anomalyhub.asgi import application
from tests.benchmarks.server import live_server


def _call(app, method, path, body=b"", headers=()):
    async def call():
        communicator = HttpCommunicator(app, method, path, body=body, headers=list(headers))
        response = await communicator.get_response(timeout=10)  # a busy machine: not the default 1 s
        await communicator.wait(timeout=10)
        return response
    return asyncio.run(call())


def test_django_answers_and_finishes_the_request():
    finished = []
    request_finished.connect(receiver := lambda **kwargs: finished.append(True))
    try:
        response = _call(application, "GET", "/healthz", headers=[(b"x-request-id", b"rid-1")])
    finally:
        request_finished.disconnect(receiver)
    assert response["status"] == 200, response
    assert (b"x-request-id", b"rid-1") in response["headers"]
    assert finished, "request_finished (closing stale DB connections) did not run"


def test_the_server_streams_at_the_clients_pace_and_closes_when_it_leaves(tmp_path):
    """A streamed response read by a slow client must not pile up in the server's memory (an export
    at ~8 MB/s did under daphne): the server makes little more than the socket buffers hold. Once the
    client goes, the response is closed (an export gives its slot and database connection back).
    It is closed at its end, not at its next chunk: uvicorn drops what is sent after the client left
    rather than raising (which the ASGI spec allows), and WSGI has no other way to hear of it."""
    made, closed = tmp_path / "made", tmp_path / "closed"
    env = {"STREAM_CHUNKS": "1000", "STREAM_COUNT_FILE": str(made), "STREAM_CLOSED_FILE": str(closed)}  # 64 MB
    with live_server(env, app="tests.ops.streaming_app:application") as base:
        port = int(base.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as client:
            client.sendall(b"GET /stream HTTP/1.1\r\nHost: testserver\r\n\r\n")
            assert client.recv(65536).startswith(b"HTTP/1.1 200")
            time.sleep(3)  # a client that stops reading for a while
            ahead = int(made.read_text())
            assert ahead < 250, f"the server made {ahead * 64 // 1024} MB of the response for a client that read 64 KB"
        deadline = time.monotonic() + 15
        while not closed.exists():
            assert time.monotonic() < deadline, "the response was not closed after the client left"
            time.sleep(0.1)
