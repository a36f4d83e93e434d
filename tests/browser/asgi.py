"""The real ASGI application plus /static/, as `runserver` would add.

Production serves /static/ from collectstatic's output in front of the app; the browser test
runs daphne directly, so static requests go through Django's static files handler. It wraps the
WSGI app on the same thread pool as every other request (anomalyhub/asgi.py explains why
Django's own ASGI path breaks under daphne)."""

from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application

from anomalyhub.asgi import PooledWsgiToAsgi
from anomalyhub.asgi import application as _application

_static = PooledWsgiToAsgi(StaticFilesHandler(get_wsgi_application()))


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"].startswith(settings.STATIC_URL):
        return await _static(scope, receive, send)
    return await _application(scope, receive, send)
