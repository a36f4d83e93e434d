"""The errors services raise, and the one place that turns every API error into
{"error": {"code", "message", "details"}}: the REST exception handler and the error pages."""

import logging
import math

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response

logger = logging.getLogger(__name__)


# Domain errors raised by services. The API layers map them to HTTP in one place each.
class ServiceError(Exception):
    status = 400
    code = "invalid"

    def __init__(self, message: str, *, details=None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.details = details if details is not None else {}
        if code:
            self.code = code


class NotFoundError(ServiceError):
    """Missing, or another tenant's: the same answer for both."""

    status = 404
    code = "not_found"

    def __init__(self, message: str = "Not found.", **kwargs):
        super().__init__(message, **kwargs)


class PermissionDeniedError(ServiceError):
    status = 403
    code = "permission_denied"


class ConflictError(ServiceError):
    status = 409
    code = "conflict"


class InvalidError(ServiceError):
    status = 400
    code = "invalid"


class PayloadTooLargeError(ServiceError):
    status = 413
    code = "payload_too_large"


_CODES = {
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "authentication_failed",
    exceptions.NotAuthenticated: "not_authenticated",
    exceptions.PermissionDenied: "permission_denied",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
    exceptions.ValidationError: "invalid",
}


def error_body(code: str, message: str, details=None) -> dict:
    return {"error": {"code": code, "message": message, "details": details if details is not None else {}}}


def _message_for(exc: exceptions.APIException) -> str:
    if isinstance(exc, exceptions.ValidationError):
        return "The request has invalid fields; see details."
    if isinstance(exc, exceptions.Throttled) and exc.wait and str(exc.detail).startswith(str(exc.default_detail)):
        return f"Too many requests; retry in {math.ceil(exc.wait)} seconds."
    detail = exc.detail
    return str(detail) if not isinstance(detail, (list, dict)) else exc.default_detail


def exception_handler(exc, context):
    if isinstance(exc, ServiceError):
        retry = getattr(exc, "retry_after", None)  # a 429 says when to come back
        return Response(error_body(exc.code, exc.message, exc.details), status=exc.status,
                        headers={"Retry-After": str(retry)} if retry else None)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        return Response(error_body("payload_too_large", str(exc)), status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE)
    elif isinstance(exc, (OperationalError, InterfaceError)):
        # The database restarting or unreachable is transient: say so, so clients retry instead of
        # treating it as a bug (a 500). Django drops the broken connection at the end of the request.
        logger.warning("database unavailable: %s", exc)
        return Response(error_body("database_unavailable", "The database is briefly unavailable; retry in a few "
                                   "seconds. A write resent with the same Idempotency-Key is stored once."),
                        status=status.HTTP_503_SERVICE_UNAVAILABLE, headers={"Retry-After": "2"})
    elif isinstance(exc, SuspiciousOperation):  # e.g. too many form fields; Django would answer HTML
        return Response(error_body("malformed_request", f"The request was refused: {exc}"),
                        status=status.HTTP_400_BAD_REQUEST)
    if not isinstance(exc, exceptions.APIException):
        return None  # unexpected: let Django log it and answer 500
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), exc.default_code)
    details = exc.detail if isinstance(exc.detail, (list, dict)) else {}
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(math.ceil(exc.wait))  # whole seconds, never less than asked
    return Response(error_body(code, _message_for(exc), details), status=exc.status_code, headers=headers)


def json_404(request, exception=None):
    return JsonResponse(error_body("not_found", f"No route matches {request.path}."), status=404)


def json_500(request):
    return JsonResponse(error_body("server_error", "Internal error; it has been logged."), status=500)


# Error pages (the URLconf's handler404/handler500): JSON under /api/, HTML elsewhere.
def handler404(request, exception):
    if request.path.startswith("/api/"):
        return json_404(request, exception)
    return defaults.page_not_found(request, exception)


def handler500(request):
    if request.path.startswith("/api/"):
        return json_500(request)
    return defaults.server_error(request)
