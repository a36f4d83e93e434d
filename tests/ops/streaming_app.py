"""An ASGI app for test_asgi_http's real-server tests: a WSGI app on a2wsgi's pool, as anomalyhub.asgi
serves HTTP, streaming STREAM_CHUNKS chunks of 64 KB. It writes how many it has made so far to
STREAM_COUNT_FILE, and "closed" to STREAM_CLOSED_FILE when the server closes the response."""

import os
from pathlib import Path

from a2wsgi import WSGIMiddleware

CHUNK = b"x" * 65536


class _Stream:
    def __iter__(self):
        for made in range(1, int(os.environ["STREAM_CHUNKS"]) + 1):
            yield CHUNK
            Path(os.environ["STREAM_COUNT_FILE"]).write_text(str(made))

    def close(self):
        Path(os.environ["STREAM_CLOSED_FILE"]).write_text("closed")


def _app(environ, start_response):
    if environ["PATH_INFO"] == "/healthz":  # the harness waits for it before the test starts
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _Stream()


application = WSGIMiddleware(_app, workers=2)
