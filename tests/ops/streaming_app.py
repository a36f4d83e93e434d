"""An ASGI app for test_asgi_http's real-daphne test: anomalyhub.asgi's adapter streaming
STREAM_CHUNKS chunks of 64 KB, writing how many it has made so far to STREAM_COUNT_FILE."""

import os

from anomalyhub.asgi import PooledWsgiToAsgi

CHUNK = b"x" * 65536


class _Stream:
    streaming = True

    def __iter__(self):
        for made in range(1, int(os.environ["STREAM_CHUNKS"]) + 1):
            yield CHUNK
            with open(os.environ["STREAM_COUNT_FILE"], "w") as f:
                f.write(str(made))

    def close(self):
        pass


def _app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream")])
    return _Stream()


application = PooledWsgiToAsgi(_app)
