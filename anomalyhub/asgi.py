"""ASGI entry point: HTTP through Django's WSGI handler on a thread pool, WebSockets through Channels."""

import inspect
import os
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from asgiref.wsgi import WsgiToAsgi, WsgiToAsgiInstance
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
# The plain function under asgiref's @sync_to_async (3.13 wraps it in a partial of SyncToAsync.__call__).
_run_wsgi_app = inspect.unwrap(WsgiToAsgiInstance.run_wsgi_app)


class _PooledInstance(WsgiToAsgiInstance):
    async def run_wsgi_app(self, body):
        return await sync_to_async(_run_wsgi_app, thread_sensitive=False, executor=_POOL)(self, body)


class PooledWsgiToAsgi(WsgiToAsgi):
    async def __call__(self, scope, receive, send):
        await _PooledInstance(self.wsgi_application, self.duplicate_header_limit)(scope, receive, send)


http_app = PooledWsgiToAsgi(get_wsgi_application())

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from accounts.channels_auth import ActorMiddleware  # noqa: E402
from anomalyhub.routing import websocket_urlpatterns  # noqa: E402

# Origin checks happen in ActorMiddleware: programs without an Origin header must get through.
application = ProtocolTypeRouter({
    "http": http_app,
    "websocket": ActorMiddleware(URLRouter(websocket_urlpatterns)),
})
