"""Teaches drf-spectacular how programs authenticate, so the OpenAPI document says so."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "ahk_<prefix>_<secret>",
                "description": "An organization API key (scopes: read, ingest, admin)."}
