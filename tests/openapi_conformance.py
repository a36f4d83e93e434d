"""Every REST response the suite receives must match the OpenAPI document.

`ResponseConformanceMiddleware` sits outermost in the test clients' middleware (tests/conftest.py
puts it there for every test) and checks each `/api/v1/` response with openapi-core against the
operation and status the schema declares: an undeclared status, a body of another shape, a
declared-non-null field that came back null all fail the test at the request that caused them.
The schema is the one `/api/v1/schema/` serves, generated once per test session.
"""

from __future__ import annotations

import functools
import json

from django.conf import settings
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.renderers import OpenApiJsonRenderer
from openapi_core import OpenAPI
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.testing import MockRequest, MockResponse

PROJECT_URLCONF = "anomalyhub.urls"  # a test serving its own routes (tests/unscoped_urls.py) is not checked
API_PREFIX = "/api/v1/"
NOT_OPERATIONS = ("/api/v1/schema/", "/api/v1/docs/")  # the document itself and its viewer


@functools.cache
def schema_dict() -> dict:
    schema = SchemaGenerator(urlconf=PROJECT_URLCONF).get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(schema))


@functools.cache
def openapi() -> OpenAPI:
    return OpenAPI.from_dict(schema_dict())


def _explain(exc: Exception) -> str:
    reasons = [str(exc)]
    cause = exc.__cause__
    for error in getattr(cause, "schema_errors", None) or ([cause] if cause else []):
        path = "/".join(str(p) for p in getattr(error, "absolute_path", []))
        reasons.append(f"  at /{path}: {getattr(error, 'message', error)}")
    return "\n".join(reasons)


def check_response(method: str, path: str, query: dict, response) -> None:
    """Raises AssertionError when `response` is not what the schema declares for the operation."""
    if not path.startswith(API_PREFIX) or path.startswith(NOT_OPERATIONS) or method in ("HEAD", "OPTIONS"):
        return
    if settings.ROOT_URLCONF != PROJECT_URLCONF:
        return
    if getattr(response, "streaming", False):
        return  # exports: reading the stream here would buffer it; their own tests read it
    if response.get("Content-Type", "").startswith("text/html"):
        return  # a browser asked: the browsable API, or a one-click link's page, not the JSON API
    request = MockRequest("http://testserver", method, path, args=query)
    content_type = response.get("Content-Type", "")
    mock = MockResponse(response.content, status_code=response.status_code,
                        headers=dict(response.headers.items()), content_type=content_type)
    try:
        openapi().validate_response(request, mock)
    except (PathNotFound, OperationNotFound) as exc:
        if response.status_code in (404, 405):
            return  # no such route or method: nothing the schema promises
        raise AssertionError(f"{method} {path} answered {response.status_code}, but the OpenAPI "
                             f"document has no such operation: {exc}") from None
    except Exception as exc:  # openapi-core's validation errors share no narrower base
        raise AssertionError(
            f"{method} {path} answered {response.status_code} ({content_type}) outside its OpenAPI "
            f"declaration:\n{_explain(exc)}\nbody: {response.content[:500]!r}") from None


class ResponseConformanceMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        check_response(request.method, request.path, dict(request.GET.lists()), response)
        return response
