"""The client's address: the one function that decides it (`client_address`), applied once to every
HTTP request and WebSocket at the ASGI edge (`TrustedProxies`), so the audit log, the REST and
allauth rate limits, the bad-key lockout and the socket checks all see the same address.

Behind a reverse proxy the socket's peer is the proxy, and the client is named in X-Forwarded-For.
That header says whatever its sender wrote, so it is believed only when the peer is a proxy listed
in TRUSTED_PROXIES (addresses or networks; empty by default: nobody), and only as far back as
trusted proxies appended it: read from the right, the first address that is not a trusted proxy is
the client. What a client wrote further left is ignored. (uvicorn's own proxy headers would
believe any local peer, so anomalyhub/gunicorn_conf.py turns them off.)
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=8)
def trusted_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)
    except ValueError as exc:
        raise ImproperlyConfigured(f"TRUSTED_PROXIES: {exc}; give addresses or networks such as 10.0.0.0/8") from None


def _address(text: str):
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def _is_trusted(address, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def client_address(peer: str | None, forwarded_for: str | None, networks: tuple[Network, ...]) -> str | None:
    """The client of a connection from `peer` that carried `forwarded_for` (X-Forwarded-For, all of
    its headers joined with commas)."""
    if not forwarded_for or not _is_trusted(_address(peer or ""), networks):
        return peer
    client = peer
    for hop in reversed(forwarded_for.split(",")):
        address = _address(hop)
        if address is None:
            return client  # garbage where a trusted proxy would have written an address: stop at the last good hop
        client = str(address)
        if not _is_trusted(address, networks):
            return client
    return client  # every hop was one of our proxies


class TrustedProxies:
    """ASGI middleware: replaces scope["client"] by the client that trusted proxies forwarded for;
    from anyone else, X-Forwarded-For changes nothing."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        networks = trusted_networks(tuple(settings.TRUSTED_PROXIES))
        client = scope.get("client")
        if networks and client and scope["type"] in ("http", "websocket"):
            forwarded = ",".join(value.decode("latin1") for name, value in scope.get("headers", ())
                                 if name.lower() == b"x-forwarded-for")
            address = client_address(client[0], forwarded, networks)
            if address != client[0]:
                scope = {**scope, "client": (address, 0)}
        return await self.app(scope, receive, send)
