"""/graphql/ over HTTP and WebSocket, authenticated and scoped through accounts.

HTTP: `Authorization: Bearer <api key>` (accounts.authentication) or the session. Session
requests carry CSRF protection like any form post; API-key requests have no cookie to ride on
and are exempt. GraphiQL is served only when settings.DEBUG.
WebSocket (graphql-transport-ws): the actor accounts.channels_auth put in the scope (API key
header, or session with an allowed Origin), or a short-lived ticket in connection_init's payload.
"""

from __future__ import annotations

import json
import time
from collections import deque
from dataclasses import dataclass

from cross_web import HTTPException  # strawberry's own HTTP error type (a locked dependency of it)
from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from strawberry.channels import GraphQLWSConsumer
from strawberry.django.context import StrawberryDjangoContext
from strawberry.django.views import GraphQLView
from strawberry.exceptions import ConnectionRejectionError
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL

from accounts import bruteforce
from accounts.audit import client_ip
from accounts.authentication import key_from_header
from accounts.socket_access import REVOKED, AccessBoundConsumer, socket_actor
from accounts.tenancy import ANONYMOUS, Actor, actor_for_request

from .lib.jsonbody import JSONBodyError, loads
from .schema import schema


@dataclass
class GraphQLContext(StrawberryDjangoContext):
    actor: Actor = ANONYMOUS


def _refusal(status: int, code: str, message: str) -> JsonResponse:
    return JsonResponse({"data": None, "errors": [{"message": message, "extensions": {"code": code}}]},
                        status=status)


def _as_json_error(response):
    """Strawberry answers a request it cannot read (no query, bad JSON, wrong types) in plain text;
    clients get the same JSON error shape as every other GraphQL refusal."""
    if response.status_code >= 400 and response.get("Content-Type", "").startswith("text/plain"):
        return _refusal(response.status_code, "bad_request",
                        f"{response.content.decode(errors='replace')}. POST JSON such as "
                        '{"query": "{ me { role } }", "variables": {}}.')
    return response


def _csrf_failure(request) -> HttpResponse | None:
    return CsrfViewMiddleware(lambda r: None).process_view(request, None, (), {})


class AnomalyHubGraphQLView(GraphQLView):
    def dispatch(self, request, *args, **kwargs):
        header = request.headers.get("Authorization")
        raw = key_from_header(header)
        if raw:
            try:
                key = bruteforce.authenticate_key(raw, client_ip(request))
            except bruteforce.TooManyAttempts as exc:
                response = _refusal(429, "rate_limited", exc.message)
                response["Retry-After"] = str(exc.wait)
                return response
            if key is None:
                return _refusal(401, "authentication_failed", "Invalid or revoked API key.")
            request.auth = key  # tenancy.actor_for_request takes the key's organization and scope
        elif header and header.split()[0].lower() == "bearer":
            return _refusal(401, "authentication_failed", "Malformed API key; expected 'Bearer ahk_...'.")
        elif request.method == "GET" and "query" not in request.GET:
            return super().dispatch(request, *args, **kwargs)  # GraphiQL (DEBUG only) holds no data
        elif not request.user.is_authenticated:
            return _refusal(401, "not_authenticated", "Sign in or send 'Authorization: Bearer <api key>'.")
        elif request.method == "POST" and _csrf_failure(request) is not None:
            return _refusal(403, "csrf_failed", "CSRF check failed: send the csrftoken cookie's value in the "
                                                "X-CSRFToken header, or use an API key.")
        return _as_json_error(super().dispatch(request, *args, **kwargs))

    def decode_json(self, data: str | bytes) -> object:
        # The bounded reader of every JSON body: deep nesting is a 400, not a RecursionError.
        try:
            return loads(data)
        except JSONBodyError as exc:
            raise HTTPException(400, str(exc)) from None

    def get_context(self, request, response) -> GraphQLContext:
        return GraphQLContext(request=request, response=response, actor=actor_for_request(request))

    def render_graphql_ide(self, request):
        if not settings.DEBUG:
            return _refusal(404, "not_found", "GraphiQL is available in development only; POST queries here.")
        return super().render_graphql_ide(request)


graphql_view = csrf_exempt(AnomalyHubGraphQLView.as_view(schema=schema))


# As on the live feed (detection.consumers): a flood or an oversized frame closes the socket. Frames
# may be larger than the live feed's, since they carry whole GraphQL documents (<= MAX_TOKENS).
WS_MAX_FRAME_BYTES = settings.GRAPHQL_WS_MAX_FRAME_BYTES
WS_FLOOD_WINDOW, WS_FLOOD_MESSAGES = float(settings.WS_FLOOD_SECONDS), settings.WS_FLOOD_MESSAGES
CLOSE_FLOOD, CLOSE_TOO_BIG = 4029, 1009
CLOSE_FORBIDDEN = 4403  # graphql-transport-ws' "Forbidden", as a refused connection_init


class AnomalyHubGraphQLWSConsumer(AccessBoundConsumer, GraphQLWSConsumer):
    async def dispatch(self, message):
        # Strawberry hands every channel-layer message to its subscriptions' queues; the end of
        # the socket's access (accounts.socket_access) is for the socket itself.
        if message.get("type") == REVOKED:
            return await self.access_revoked(message)
        return await super().dispatch(message)

    async def access_ended(self):
        await self.close(code=CLOSE_FORBIDDEN, reason="Forbidden: your access ended; authenticate again to reconnect")

    async def disconnect(self, code):
        await self.unbind_access()
        await super().disconnect(code)

    def decode_json(self, data: str | bytes) -> object:
        # The bounded reader, as for HTTP bodies. Strawberry closes 4400 on a JSONDecodeError only,
        # so a too-deep frame is reported as one (it was an uncaught RecursionError).
        try:
            return loads(data)
        except JSONBodyError as exc:
            raise json.JSONDecodeError(str(exc), data if isinstance(data, str) else "", 0) from None

    async def receive(self, text_data=None, bytes_data=None):
        now = time.monotonic()
        received = self.__dict__.setdefault("_received", deque())
        received.append(now)
        while received and now - received[0] > WS_FLOOD_WINDOW:
            received.popleft()
        if len(received) > WS_FLOOD_MESSAGES:
            return await self.close(code=CLOSE_FLOOD, reason=f"Too many messages: more than {WS_FLOOD_MESSAGES} "
                                                             f"in {WS_FLOOD_WINDOW:.0f} s")
        if len(text_data or bytes_data or "") > WS_MAX_FRAME_BYTES:
            return await self.close(code=CLOSE_TOO_BIG, reason=f"Frame too large: at most {WS_MAX_FRAME_BYTES} bytes")
        return await super().receive(text_data=text_data, bytes_data=bytes_data)

    async def get_context(self, request, response) -> dict:
        return {"request": request, "ws": request, "actor": request.scope.get("actor", ANONYMOUS)}

    async def on_ws_connect(self, context):
        ticket = (context.get("connection_params") or {}).get("ticket")
        actor, session_key, session = await socket_actor(self.scope, ticket)
        if actor.organization_id is None or not actor.can("view"):
            raise ConnectionRejectionError({"code": "not_authenticated"})
        context["actor"] = actor
        await self.bind_access(actor, session_key, session)
        return None


# graphql-transport-ws only: a client offering just the legacy graphql-ws is accepted and closed with
# 4406 "Subprotocol not acceptable" (strawberry's answer), never served the legacy protocol, whose
# refusal path closed with 1011 (a code daphne refuses: the socket stayed open, logging tracebacks).
graphql_ws_consumer = AnomalyHubGraphQLWSConsumer.as_asgi(schema=schema,
                                                          subscription_protocols=(GRAPHQL_TRANSPORT_WS_PROTOCOL,))

# Included by anomalyhub.urls (path "graphql/") and anomalyhub.routing (WebSocket "graphql/").
urlpatterns = [path("", graphql_view, name="graphql")]
websocket_urlpatterns = [path("graphql/", graphql_ws_consumer)]
