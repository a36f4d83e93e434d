"""Error pages: JSON under /api/, HTML elsewhere."""

from django.views import defaults

from .lib.errors import json_404, json_500


def handler404(request, exception):
    if request.path.startswith("/api/"):
        return json_404(request, exception)
    return defaults.page_not_found(request, exception)


def handler500(request):
    if request.path.startswith("/api/"):
        return json_500(request)
    return defaults.server_error(request)
