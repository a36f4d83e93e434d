"""Request ids for logs, and a body-size guard that answers 413 before anything is parsed."""

import contextvars
import logging
import uuid

from django.conf import settings
from django.http import JsonResponse

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

# Routes that accept bulk data get the larger ingest limit.
_INGEST_SUFFIXES = ("/points/", "/ingest/")


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        record.request_id = request_id_var.get()
        return True


class RequestIdMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        rid = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
        token = request_id_var.set(rid)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response["X-Request-Id"] = rid
        return response


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
