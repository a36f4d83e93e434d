"""WebSocket routes, composed from the apps."""

from anomalyhub.graphql_view import websocket_urlpatterns as graphql_ws
from detection.routing import websocket_urlpatterns as detection_ws

websocket_urlpatterns: list = [*detection_ws, *graphql_ws]
