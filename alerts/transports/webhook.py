"""Outbound webhooks: the SSRF guard and the signed POST (no redirects followed).

The guard resolves the host and refuses private, loopback, link-local and other non-global
addresses unless settings.WEBHOOK_ALLOW_PRIVATE_IPS or the host is in WEBHOOK_ALLOWED_HOSTS.
Redirects are never followed: a 3xx to an internal address would walk around the guard.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import ssl
import threading
from urllib.parse import urlsplit

from django.conf import settings

from accounts.errors import InvalidError

from .. import signing
from .base import Sent, TransportError, excerpt, is_transient_status, parse_retry_after

# The whole exchange (connect, send, answer), not only each socket read: a receiver that drips
# its answer a byte at a time must not hold an alerts worker longer than this.
TIMEOUT_SECONDS = 10
USER_AGENT = "AnomalyHub-Webhooks/1"


class UnsafeDestination(InvalidError):
    code = "unsafe_webhook_url"


def _refused(address) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_unspecified


def check_destination(url: str) -> None:
    """Raises UnsafeDestination (a clear 400 over the API) for URLs a webhook must not reach."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeDestination("A webhook URL must be an absolute http(s) URL.", details={"url": [url]})
    host = parts.hostname
    if settings.WEBHOOK_ALLOW_PRIVATE_IPS or host in settings.WEBHOOK_ALLOWED_HOSTS:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except socket.gaierror:
        raise UnsafeDestination(f"The webhook host '{host}' does not resolve.", details={"url": [url]}) from None
    for info in infos:
        address = info[4][0]
        if _refused(address):
            raise UnsafeDestination(
                f"The webhook URL points to a private, loopback or link-local address ({host} -> {address}); "
                "such destinations are refused. Use a public address, or ask the operator to allow-list the "
                "host (WEBHOOK_ALLOWED_HOSTS).", details={"url": [url]})


def body_of(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True, default=str).encode()


def _abort(conn: http.client.HTTPConnection, expired: threading.Event) -> None:
    """Deadline reached: shutting the socket down wakes the blocked read with an error."""
    expired.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def post(url: str, *, body: bytes, msg_id: str, secrets: list[str], timestamp: int | None = None) -> Sent:
    """One signed POST. Raises TransportError: transient for network errors, timeouts, 429, 5xx."""
    try:
        check_destination(url)
    except UnsafeDestination as exc:
        raise TransportError(exc.message, permanent=True) from None
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               **signing.headers(secrets, msg_id, body, timestamp)}
    conn_class = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    kwargs = {"context": ssl.create_default_context()} if parts.scheme == "https" else {}
    conn = conn_class(parts.hostname, parts.port, timeout=TIMEOUT_SECONDS, **kwargs)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    expired = threading.Event()
    watchdog = threading.Timer(TIMEOUT_SECONDS, _abort, (conn, expired))
    watchdog.daemon = True
    watchdog.start()
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        text = response.read(2048)
        status = response.status
        retry_after = parse_retry_after(response.getheader("Retry-After"))
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, DNS, timeout, TLS
        if expired.is_set() or isinstance(exc, TimeoutError):  # the deadline or one read's own timeout
            raise TransportError(f"TimeoutError: the receiver did not answer within {TIMEOUT_SECONDS} s") from None
        raise TransportError(f"{type(exc).__name__}: {exc}") from None
    finally:
        watchdog.cancel()
        conn.close()
    if 200 <= status < 300:
        return Sent(status_code=status, excerpt=excerpt(text))
    if 300 <= status < 400:
        raise TransportError(f"The receiver answered a redirect ({status}); redirects are not followed.",
                             permanent=True, status_code=status, excerpt=excerpt(text))
    raise TransportError(f"The receiver answered {status}", permanent=not is_transient_status(status),
                         status_code=status, retry_after=retry_after, excerpt=excerpt(text))
