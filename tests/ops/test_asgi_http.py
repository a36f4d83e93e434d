"""anomalyhub.asgi's HTTP adapter: Django's WSGI handler on the thread pool, one hop per request.
Whole responses, streamed ones (exports, static files), request bodies, and the response's close()
(Django's request_finished) all go through as under asgiref's WsgiToAsgi."""

import asyncio
import gc
import json
import os
import socket
import sys
import threading
import time
from unittest import mock

from channels.testing import HttpCommunicator
from django.conf import settings
from django.core.signals import request_finished

from anomalyhub.asgi import PooledWsgiToAsgi, application
from tests.waits import wait_until


class _Streamed:
    streaming = True

    def __init__(self):
        self.closed = False

    def __iter__(self):
        yield b"first,"
        yield b""
        yield b"second"

    def close(self):
        self.closed = True


def _wsgi_app(body: list):
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/stream":
            start_response("200 OK", [("Content-Type", "text/csv")])
            body.append(_Streamed())
            return body[-1]
        start_response("201 Created", [("Content-Type", "application/json"), ("X-Seen", environ["HTTP_X_SEEN"])])
        received = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        return [b'{"method": "%s", "echo": ' % environ["REQUEST_METHOD"].encode(), received, b"}"]
    return app


def _call(app, method, path, body=b"", headers=()):
    async def call():
        communicator = HttpCommunicator(app, method, path, body=body, headers=list(headers))
        response = await communicator.get_response()
        await communicator.wait()  # the app returns once the response is closed in its thread
        return response
    return asyncio.run(call())


_EXPORT_SCOPE = {"type": "http", "method": "GET", "path": "/export", "query_string": b"", "headers": [],
                 "http_version": "1.1", "scheme": "http", "server": ("testserver", 80), "client": ("127.0.0.1", 1)}


def _endless_export(stopped: threading.Event):
    """A WSGI app streaming rows until its response is closed, which sets `stopped`."""
    class Endless(_Streamed):
        def __iter__(self):
            while True:
                time.sleep(0.01)
                yield b"row\n"

        def close(self):
            stopped.set()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/csv")])
        return Endless()
    return app


def test_a_whole_response_keeps_status_headers_and_body():
    payload = json.dumps({"x": "y" * 100_000}).encode()  # above the in-memory spool: a temporary file
    response = _call(PooledWsgiToAsgi(_wsgi_app([])), "POST", "/echo", payload,
                     [(b"content-length", str(len(payload)).encode()), (b"x-seen", b"yes")])
    assert response["status"] == 201
    assert (b"x-seen", b"yes") in response["headers"]
    assert json.loads(response["body"]) == {"method": "POST", "echo": json.loads(payload)}


def test_a_streamed_response_arrives_chunk_by_chunk_and_is_closed():
    made = []
    response = _call(PooledWsgiToAsgi(_wsgi_app(made)), "GET", "/stream")
    assert response["status"] == 200 and response["body"] == b"first,second"
    assert made[0].closed


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


def test_daphne_leaves_form_bodies_to_django():
    """Twisted would parse every POST's Content-Type (email package) and form bodies into
    request.args, which daphne never reads; importing the app turns that off."""
    from daphne.http_protocol import WebRequest

    assert WebRequest(mock.MagicMock())._parsePOSTFormSubmission is False


def test_the_loaded_code_is_out_of_the_collectors_sight():
    """Full collections walk only what requests leave behind, not the whole loaded code (see
    anomalyhub.asgi._freeze_startup_objects): importing the app froze it, URLconf included."""
    assert settings.ROOT_URLCONF in sys.modules
    assert gc.get_freeze_count() > 50_000


def test_a_streamed_response_stops_once_the_client_has_gone():
    """An export whose client left stops at its next chunk and is closed, instead of holding a
    pool thread and its database connection until the end."""
    from channels.testing import ApplicationCommunicator

    stopped = threading.Event()

    async def run():
        communicator = ApplicationCommunicator(PooledWsgiToAsgi(_endless_export(stopped)), _EXPORT_SCOPE)
        await communicator.send_input({"type": "http.request", "body": b""})
        assert (await communicator.receive_output(timeout=5))["type"] == "http.response.start"
        assert (await communicator.receive_output(timeout=5))["body"] == b"row\n"
        await communicator.send_input({"type": "http.disconnect"})
        return await asyncio.get_running_loop().run_in_executor(None, stopped.wait, 5)

    assert asyncio.run(run()), "the endless export was never closed after the client left"


def test_a_streamed_response_stops_when_the_server_stops():
    """A server shutting down (SIGTERM: a deploy) stops its event loop with an export still streaming
    and no disconnect sent. The export's thread waited for that loop forever: the process never
    exited, and the export's transaction stayed open, holding its locks (seen: 19 minutes)."""
    stopped, first = threading.Event(), threading.Event()

    async def send(message):
        if message.get("body"):
            first.set()

    requested = []

    async def receive():  # the request, then a client that never leaves
        if not requested:
            requested.append(True)
            return {"type": "http.request", "body": b""}
        await asyncio.Event().wait()

    loop = asyncio.new_event_loop()
    server = threading.Thread(target=loop.run_forever)
    server.start()
    asyncio.run_coroutine_threadsafe(PooledWsgiToAsgi(_endless_export(stopped))(_EXPORT_SCOPE, receive, send), loop)
    try:
        assert first.wait(5), "the export never sent its first chunk"
        loop.call_soon_threadsafe(loop.stop)
        server.join(5)
        assert stopped.wait(5), "the export's thread still waits for a server loop that has stopped"
    finally:
        if not server.is_alive():  # wind the request's tasks up on the stopped loop, then close it
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()


def _connect(port: int):
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=30)
    except OSError:
        return None


def _settled(count_file, quiet: float = 0.5) -> int:
    """The server's count of chunks made, once it has stood still for `quiet` seconds: paced, the
    server stops when the socket buffers are full; unpaced, when it has made the whole response."""
    seen = {"count": -1, "since": time.monotonic()}

    def still() -> bool:
        try:
            count = int(count_file.read_text())
        except (OSError, ValueError):  # not written yet, or caught mid-write
            count = 0
        if count != seen["count"]:
            seen.update(count=count, since=time.monotonic())
        return count > 0 and time.monotonic() - seen["since"] >= quiet

    wait_until(still, "the server to stop making chunks", timeout=30)
    return seen["count"]


def test_daphne_streams_only_as_fast_as_the_client_reads(tmp_path):
    """daphne's send only appends to the connection's buffer: a streamed response read by a slow
    client piled up in the server's memory (an export at ~8 MB/s). With a Twisted producer pacing the
    stream, the server makes little more than the socket buffers hold until the client reads on."""
    import subprocess

    from tests.benchmarks.harness import REPO
    from tests.benchmarks.server import free_port

    chunks, made = 1000, tmp_path / "made"  # 64 MB in all
    port = free_port()
    env = {**os.environ, "STREAM_CHUNKS": str(chunks), "STREAM_COUNT_FILE": str(made)}
    server = subprocess.Popen([sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "-v", "0",
                               "tests.ops.streaming_app:application"], cwd=REPO, env=env)
    try:
        def listening():
            assert server.poll() is None, "daphne exited"
            return _connect(port)

        client = wait_until(listening, "daphne to listen", timeout=60)
        with client:
            client.sendall(b"GET /stream HTTP/1.1\r\nHost: testserver\r\n\r\n")
            received = client.recv(65536)
            assert received.startswith(b"HTTP/1.1 200")
            ahead = _settled(made)  # a client that stops reading: until the server stops making more
            assert ahead < 250, f"the server made {ahead * 64 // 1024} MB of the response for a client that read 64 KB"
            while not received.endswith(b"0\r\n\r\n"):  # then reads to the end: all of it comes
                data = client.recv(1 << 20)
                assert data, "the connection closed before the end of the response"
                received += data
            assert int(made.read_text()) == chunks and received.count(b"x") == chunks * 65536
    finally:
        server.terminate()
        server.wait(10)
