"""ASGI entry point (the Procfile's `web`: gunicorn running uvicorn workers, anomalyhub/gunicorn_conf.py).

WebSockets go through Channels as its documentation sets up. HTTP goes through Django's WSGI handler
on a2wsgi's thread pool: every view is synchronous, and Django's ASGI handler would run each request
on a thread of its own (a new database connection each time, so CONN_MAX_AGE reuses nothing) and
read a streamed export whole into memory before sending it (StreamingHttpResponse consumes a
synchronous iterator under ASGI). a2wsgi's fixed pool keeps one connection per thread, as a
threaded WSGI server does, and its bounded send queue holds a streamed response to the client's pace.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anomalyhub.settings")
get_asgi_application()  # sets Django up before the imports below touch models

from a2wsgi import WSGIMiddleware  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

from accounts.channels_auth import ActorMiddleware  # noqa: E402
from anomalyhub.lib.client_address import TrustedProxies  # noqa: E402
from anomalyhub.routing import websocket_urlpatterns  # noqa: E402

http_app = WSGIMiddleware(get_wsgi_application(), workers=settings.HTTP_THREADS)

# Origin checks happen in ActorMiddleware: programs without an Origin header must get through.
# TrustedProxies first: every later layer sees the client address it decided.
application = TrustedProxies(ProtocolTypeRouter({
    "http": http_app,
    "websocket": ActorMiddleware(URLRouter(websocket_urlpatterns)),
}))
