"""Puts the actor in a WebSocket scope: an API key from the Authorization header, or a session
user. Short-lived tickets (?ticket=) are resolved by the consumer through tenancy.

Origin policy: browsers send an Origin; a foreign one is refused outright, and a session cookie
only counts when it comes with an allowed Origin (cross-site WebSocket hijacking). Programs send
no Origin and authenticate with an API key or a ticket."""

from urllib.parse import urlparse

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import validate_host

from . import bruteforce
from .authentication import key_from_header
from .tenancy import ANONYMOUS, actor_for_api_key, actor_for_user


def _headers(scope) -> dict[str, str]:
    return {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope.get("headers", [])}


def origin_status(headers: dict[str, str]) -> str:
    """'absent', 'allowed' or 'foreign'."""
    origin = headers.get("origin")
    if not origin:
        return "absent"
    host = urlparse(origin).hostname or ""
    return "allowed" if validate_host(host, settings.ALLOWED_HOSTS or ["localhost", "127.0.0.1"]) else "foreign"


@database_sync_to_async
def _resolve(scope, headers, origin):
    raw = key_from_header(headers.get("authorization"))
    if raw:
        client = (scope.get("client") or [None])[0]
        try:
            key = bruteforce.authenticate_key(raw, client)
        except bruteforce.TooManyAttempts:
            return ANONYMOUS  # refused like any bad key; the socket is closed before accept
        return actor_for_api_key(key) if key else ANONYMOUS
    if origin != "allowed":
        return ANONYMOUS
    session = scope.get("session")
    ref = headers.get("x-organization") or (session.get("organization_id") if session else None)
    return actor_for_user(scope.get("user"), ref)


class _ActorInner:
    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        headers = _headers(scope)
        origin = origin_status(headers)
        scope = dict(scope)
        scope["origin_status"] = origin
        scope["actor"] = ANONYMOUS if origin == "foreign" else await _resolve(scope, headers, origin)
        return await self.inner(scope, receive, send)


def ActorMiddleware(inner):  # noqa: N802 (named like Channels' own middleware stacks)
    return AuthMiddlewareStack(_ActorInner(inner))
