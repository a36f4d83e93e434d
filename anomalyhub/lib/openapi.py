"""The OpenAPI document's error responses, declared once for every operation.

Every API error is the one body `anomalyhub.lib.errors` writes, `{"error": {code, message, details}}`.
Which statuses an operation can answer follows from what the request goes through, not from each
view: any request may carry a wrong key (401) or be rate limited (429) or meet a database restart
(503); a path with an id may name nothing (404); a body can be invalid (400), too large (413), of
another media type (415) or conflict with what is stored (409); an authenticated operation may be
refused to a role or key scope, and a session's unsafe request without its CSRF token (403).
A view whose services raise another status names it in `extra_error_statuses`.
"""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from rest_framework import permissions, serializers

UNSAFE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


class ErrorDetailSerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Stable machine-readable code, e.g. `invalid`, `not_found`.")
    message = serializers.CharField(help_text="What went wrong and what to do next.")
    details = serializers.JSONField(help_text="Per-field or per-row details; `{}` when there are none.")


class ErrorSerializer(serializers.Serializer):
    error = ErrorDetailSerializer()


ERROR_DESCRIPTIONS = {
    400: "The request is invalid: see `error.details`.",
    401: "No credentials, or the API key or session is not valid.",
    403: "Your role or the key's scope does not allow this (or a session request lacks its CSRF token).",
    404: "No such object in your organization.",
    409: "The request conflicts with what is stored.",
    413: "The request body is larger than this endpoint accepts.",
    410: "The link has expired or was used up.",
    415: "The body's media type is not accepted here.",
    429: "Too many requests: retry after the `Retry-After` seconds.",
    503: "The database is briefly unavailable: retry after the `Retry-After` seconds.",
}


class AutoSchema(SpectacularAutoSchema):
    """drf-spectacular's schema plus the error responses each operation can answer."""

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        error = self.resolve_serializer(ErrorSerializer, "response").ref
        # The JSON error body; a view that also renders pages for browsers (a one-click link's
        # ?format=html) answers its errors as a page there too.
        content = {"application/json": {"schema": error},
                   **{mt: {"schema": {"type": "string"}} for mt in self.map_renderers("media_type") if mt == "text/html"}}
        for code in sorted(self._error_statuses(operation, method)):
            # A view's own description of the status (e.g. the export's 429) is kept; the body is the one body.
            response = operation["responses"].setdefault(str(code), {"description": ERROR_DESCRIPTIONS[code]})
            response["content"] = content
        return operation

    def _error_statuses(self, operation, method) -> set[int]:
        codes = {401, 429, 503, *getattr(self.view, "extra_error_statuses", ())}
        params = operation.get("parameters", [])
        if any(p["in"] == "path" for p in params):
            codes.add(404)
        if "requestBody" in operation:
            codes |= {400, 404, 413, 415}  # 404: the body may name something (a symbol, a token) that is not there
        if any(p["in"] in ("query", "header") for p in params):
            codes.add(400)
        if method in UNSAFE_METHODS:
            codes |= {403, 409}
            codes.add(400)  # a service's own validation (e.g. a name already taken, a bad state)
        if not all(isinstance(p, permissions.AllowAny) for p in self.view.get_permissions()):
            codes.add(403)
        return codes

