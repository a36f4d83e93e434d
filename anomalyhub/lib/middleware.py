"""Request ids for logs, and a body-size guard that answers 413 before anything is parsed."""

import contextvars
import logging
import time
import uuid

from django.conf import settings
from django.http import JsonResponse
from prometheus_client import Histogram

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Routes that accept bulk data get the larger ingest limit.
_INGEST_SUFFIXES = ("/points/", "/ingest/")


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = request_id_var.get()
        return True


# Labelled by the URL pattern that matched (not the path: ids would make a series per object), so
# the label set is bounded by the URLconf.
REQUEST_SECONDS = Histogram("anomalyhub_http_request_seconds", "HTTP request latency by route",
                            ["method", "route", "status"],
                            buckets=(.0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))


class RequestIdMiddleware:
    """Gives each request an id for the logs (X-Request-Id), and times it by route."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        rid = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
        token = request_id_var.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-Id"] = rid
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None else "unmatched"
        method = request.method if request.method in _METHODS else "other"
        REQUEST_SECONDS.labels(method, route, f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started)
        return response


_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def body_limit_for(path: str) -> int:
    if path.endswith(_INGEST_SUFFIXES):
        return settings.INGEST_MAX_BODY_BYTES
    return settings.API_MAX_BODY_BYTES


class BodySizeLimitMiddleware:
    """DRF reads the raw stream without Django's size check, so the limit is enforced here."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(("/api/", "/graphql")):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            limit = body_limit_for(request.path)
            if length > limit:
                return JsonResponse({"error": {
                    "code": "payload_too_large",
                    "message": f"Request body is {length} bytes; the limit for this endpoint is {limit} bytes. "
                               "Split the data into smaller batches.",
                    "details": {"limit_bytes": limit, "received_bytes": length},
                }}, status=413)
        return self.get_response(request)
