"""The real ASGI application plus /static/, as `runserver` would add.

Production serves /static/ from collectstatic's output in front of the app; the browser test
runs the web server directly, so static requests go through Django's ASGI static files handler."""

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

from anomalyhub.asgi import application as _application

application = ASGIStaticFilesHandler(_application)
