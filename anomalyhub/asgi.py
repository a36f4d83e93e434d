"""ASGI entry point: HTTP through Django's WSGI handler on a thread pool, WebSockets through Channels."""

import asyncio
import functools
import gc
import os
import threading
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from importlib import import_module
from tempfile import SpooledTemporaryFile

from asgiref.wsgi import WsgiToAsgiInstance
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anomalyhub.settings")
get_asgi_application()  # sets Django up before the routing imports below
from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

# Every HTTP view is synchronous, so HTTP goes through the WSGI handler (Django's ASGI path hops
# threads for each middleware: measured /healthz 7.4 -> 1.9 ms, one day of bars 53 -> 32 ms).
# asgiref's WsgiToAsgi runs the app `thread_sensitive`; under daphne there is no per-request
# thread context, so every request queued on asgiref's one global thread (requests serialized)
# and keep-alive connections inherited dead executors ("CurrentThreadExecutor already quit",
# ~5% 500s under load). A fixed pool runs requests in parallel, and each worker thread keeps its
# own database connection, so CONN_MAX_AGE reuses connections as under a threaded WSGI server.
_POOL = ThreadPoolExecutor(max_workers=settings.HTTP_THREADS, thread_name_prefix="http")
_SPOOL_BYTES = 65536  # request bodies above this go to a temporary file, as asgiref's adapter does
_SEND_CHECK_SECONDS = 1.0  # a streamed chunk's send taking longer: is the client or the server gone?


class _Response:
    """WSGI start_response: keeps the status and headers as ASGI wants them."""

    status = 500
    headers: list = []

    def __call__(self, status, headers, exc_info=None):
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(name.lower().encode("latin1"), value.encode("latin1")) for name, value in headers]


def _environ_builder(scope) -> WsgiToAsgiInstance:
    builder = WsgiToAsgiInstance(None)
    builder.scope = scope  # build_environ reads the headers from self.scope
    return builder


class _ClientPace:
    """Backpressure for a streamed response under daphne. daphne's ASGI send only appends to the
    connection's buffer, so an export read by a slow client piled up in the process's memory (at
    100,000 rows/s, ~8 MB/s). This Twisted push producer, registered on daphne's request, is paused
    by Twisted when the connection's buffer fills and resumed once it drains; the streaming thread
    waits while it is paused. (Other servers, uvicorn's for one, already wait in send.)"""

    def __init__(self, request):
        self.request = request
        self.ready = threading.Event()
        self.ready.set()

    @classmethod
    def of(cls, send) -> "_ClientPace | None":
        """For daphne, whose send is partial(server.handle_reply, request); else None."""
        request = send.args[0] if isinstance(send, functools.partial) and send.args else None
        return cls(request) if callable(getattr(request, "registerProducer", None)) else None

    # IPushProducer: Twisted calls these on the event loop's thread.
    def pauseProducing(self):
        self.ready.clear()

    def resumeProducing(self):
        self.ready.set()

    def stopProducing(self):  # the connection is gone; `gone` stops the stream
        self.ready.set()

    # On the event loop's thread too (call_soon_threadsafe: in order with the sends).
    def register(self):
        if self.request.producer is None and not self.request.finished:
            self.request.registerProducer(self, True)

    def unregister(self):
        # Before the last body message: Twisted's finish() complains about a producer left behind.
        if self.request.producer is self and getattr(self.request, "channel", None) is not None:
            self.request.unregisterProducer()


class PooledWsgiToAsgi:
    """ASGI HTTP -> a WSGI app on _POOL, with one thread hop per request.

    asgiref's WsgiToAsgi hops from the pool thread back to the event loop for every message it
    sends (start, each body chunk, the end: 3+ AsyncToSync round trips, ~1 ms of CPU a request
    under load). Here the thread renders the whole response and the loop sends it; only
    streaming responses (exports, files) send chunk by chunk from the thread. The response is
    closed in its thread, so Django's request_finished (closing stale DB connections) runs."""

    def __init__(self, wsgi_application):
        self.wsgi_application = wsgi_application

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            raise ValueError(f"the WSGI adapter received a {scope['type']!r} scope")
        with SpooledTemporaryFile(max_size=_SPOOL_BYTES) as body:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return  # http.disconnect before the body arrived: nobody to answer
                body.write(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body.seek(0)
            loop = asyncio.get_running_loop()
            gone = threading.Event()
            watch = asyncio.ensure_future(self._watch_disconnect(receive, gone))
            try:
                response, content = await loop.run_in_executor(_POOL, self._run, scope, body, send, loop, gone)
            except asyncio.CancelledError:
                gone.set()  # the server gave up on the request (shutting down): a stream stops at its next chunk
                raise
            finally:
                watch.cancel()
        if content is not None:
            await send({"type": "http.response.start", "status": response.status, "headers": response.headers})
            await send({"type": "http.response.body", "body": content})

    @staticmethod
    async def _watch_disconnect(receive, gone: threading.Event) -> None:
        """A streamed response (an export) stops at its next chunk once the client has gone, rather
        than holding a pool thread and its database connection until the end."""
        while (await receive())["type"] != "http.disconnect":
            pass
        gone.set()

    def _run(self, scope, body, send, loop, gone: threading.Event):
        response = _Response()
        try:
            # asgiref's environ: headers, CONTENT_LENGTH, SERVER_NAME..., and its duplicate-header limit.
            environ = _environ_builder(scope).build_environ(scope, body)
        except ValueError:
            response.status, response.headers = 400, [(b"content-type", b"text/plain")]
            return response, b"Bad Request: Too many duplicate headers"
        result = self.wsgi_application(environ, response)
        try:
            if not getattr(result, "streaming", False):
                return response, b"".join(result)

            def waited(ready) -> bool:
                """Waits until ready(timeout) is true, checking every _SEND_CHECK_SECONDS; False once no
                one will take more: the client has gone, or the server is stopping (its loop no longer
                runs, and a wait would last forever, keeping the process alive and the export's
                transaction open)."""
                while not ready(_SEND_CHECK_SECONDS):
                    if gone.is_set() or not loop.is_running():
                        return False
                return True

            def blocking_send(message) -> bool:
                sending = send(message)
                try:
                    future = asyncio.run_coroutine_threadsafe(sending, loop)
                except RuntimeError:  # the loop is closed
                    sending.close()
                    return False
                if not waited(lambda timeout: bool(futures.wait([future], timeout).done)):
                    future.cancel()
                    return False
                future.result()
                return True

            def send_chunk(chunk: bytes) -> bool:
                """Sends a body chunk, then waits while the client is behind (daphne)."""
                return (blocking_send({"type": "http.response.body", "body": chunk, "more_body": True})
                        and (pace is None or waited(pace.ready.wait)))

            if not blocking_send({"type": "http.response.start", "status": response.status,
                                  "headers": response.headers}):
                return response, None
            pace = _ClientPace.of(send)
            if pace:
                loop.call_soon_threadsafe(pace.register)
            for chunk in result:
                if gone.is_set() or (chunk and not send_chunk(chunk)):
                    break  # the finally below closes the response (and its generator)
            else:
                if pace:
                    loop.call_soon_threadsafe(pace.unregister)
                blocking_send({"type": "http.response.body", "body": b""})
            return response, None
        finally:
            if hasattr(result, "close"):
                result.close()


http_app = PooledWsgiToAsgi(get_wsgi_application())


def _daphne_skips_form_parsing() -> None:
    """Twisted parses each POST's Content-Type with the email package (a new header class per call)
    and form or multipart bodies into request.args, which daphne never reads: Django parses the
    body it is given. Turned off for daphne's requests when daphne is the server."""
    try:
        from daphne.http_protocol import WebRequest
    except ImportError:  # another ASGI server
        return
    if getattr(WebRequest, "_anomalyhub_no_form_parsing", False):
        return
    init = WebRequest.__init__

    def __init__(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self._parsePOSTFormSubmission = False

    WebRequest.__init__ = __init__
    WebRequest._anomalyhub_no_form_parsing = True


_daphne_skips_form_parsing()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.channels_auth import ActorMiddleware  # noqa: E402
from anomalyhub.lib.client_address import TrustedProxies  # noqa: E402
from anomalyhub.routing import websocket_urlpatterns  # noqa: E402


def _unsent_bytes(protocol) -> int:
    """What Twisted holds for this connection that the socket has not taken: FileDescriptor's
    write buffer (documented fields, private names: dataBuffer from offset, plus the pending list)."""
    transport = getattr(protocol, "transport", None)
    if transport is None:
        return 0
    return (len(getattr(transport, "dataBuffer", b"")) - getattr(transport, "offset", 0)
            + getattr(transport, "_tempDataLen", 0))


class WriteBufferScope:
    """Gives WebSocket consumers `scope["unsent_bytes"]()`: the bytes the server still holds for
    that client. Under daphne a send returns as soon as the frame is in Twisted's write buffer, so
    a client that stops reading empties its queue on the server as fast as ever while the buffer
    grows without bound; the live feed drops such a client by this count (detection.consumers).
    daphne's `send` is partial(Server.handle_reply, protocol); under another server the count is 0."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        protocol = next(iter(getattr(send, "args", ())), None)
        return await self.app({**scope, "unsent_bytes": lambda: _unsent_bytes(protocol)}, receive, send)


MAX_CLOSE_REASON_BYTES = 123  # RFC 6455 5.5: a control frame's payload is at most 125 bytes, 2 are the code


def close_payload(message) -> tuple[int, bytes | None]:
    """An ASGI websocket.close as (code, reason in UTF-8 cut to what a close frame holds)."""
    reason = (message.get("reason") or "").encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore").encode()
    return message.get("code", 1000), reason or None


class CloseReasons:
    """WebSocket closes as the application asked them, reason included, under daphne.

    daphne writes the close frame through autobahn's sendClose with the code only: the ASGI
    message's `reason` is dropped (clients saw 4403/4408/4409 with no text), and codes sendClose
    refuses (it takes 1000 and 3000-4999 only, so 1009 "too big" and 1011) raise in the server,
    log a traceback and leave the socket open. Once a socket is open this sends the frame itself
    through autobahn's sendCloseFrame, which takes any code and the reason, and then goes through
    the same closing handshake. Before accept, a close stays daphne's handshake refusal (HTTP 403);
    our consumers accept first, so that browsers, which cannot read a handshake's status, get the
    code and the reason. Under another server the messages pass through untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        protocol = next(iter(getattr(send, "args", ())), None)
        if not callable(getattr(protocol, "sendCloseFrame", None)):
            return await self.app(scope, receive, send)

        async def send_closing_with_reason(message):
            if message.get("type") == "websocket.close" and protocol.state == protocol.STATE_OPEN:
                code, reason = close_payload(message)
                protocol.sendCloseFrame(code=code, reasonUtf8=reason)
                return
            await send(message)

        return await self.app(scope, receive, send_closing_with_reason)


# Origin checks happen in ActorMiddleware: programs without an Origin header must get through.
# TrustedProxies first: every later layer sees the client address it decided.
application = TrustedProxies(ProtocolTypeRouter({
    "http": http_app,
    # WriteBufferScope first: it and CloseReasons both find daphne's protocol in the `send` daphne
    # gives, which CloseReasons replaces with its own.
    "websocket": WriteBufferScope(CloseReasons(ActorMiddleware(URLRouter(websocket_urlpatterns)))),
}))


def _freeze_startup_objects() -> None:
    """The ~220,000 objects of the loaded code (Django, DRF, strawberry's schema, every view) live as
    long as the process. Left to the collector, each full collection walked them all while holding
    the GIL, stalling every request in flight: under `make load`'s read mix one daphne process ran
    ten 115-150 ms collections in 4,400 requests. Frozen, full collections scan only what requests
    leave behind: 7-31 ms. The URLconf (and every module it imports) is loaded first, for the same
    reason and so that the first request does not pay for it."""
    import_module(settings.ROOT_URLCONF)
    gc.collect()
    gc.freeze()


_freeze_startup_objects()
