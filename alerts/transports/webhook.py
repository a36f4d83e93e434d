"""Outbound webhooks: the SSRF guard and the signed POST (no redirects followed).

The guard resolves the host once and refuses private, loopback, link-local and other non-global
addresses unless settings.WEBHOOK_ALLOW_PRIVATE_IPS, the host is in WEBHOOK_ALLOWED_HOSTS, or the
address is (an entry there may be a host name, an address or a network). The POST then connects to
the very address that was checked: resolving the name again to connect would let its DNS answer
change in between (DNS rebinding: public for the check, 127.0.0.1 for the connection). The Host
header and TLS (SNI and certificate) still use the host name.
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

from anomalyhub.lib.errors import InvalidError

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


def _allowed_by_operator(host: str) -> bool:
    return settings.WEBHOOK_ALLOW_PRIVATE_IPS or host in settings.WEBHOOK_ALLOWED_HOSTS


def _allow_listed(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    for entry in settings.WEBHOOK_ALLOWED_HOSTS:
        try:
            if ip in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue  # a host name
    return False


def _parts(url: str):
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeDestination("A webhook URL must be an absolute http(s) URL.", details={"url": [url]})
    return parts


def _port(parts) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def checked_address(url: str) -> str:
    """Resolves the URL's host once and returns the address to connect to, after refusing (with
    UnsafeDestination) any answer a webhook must not reach. socket.gaierror if it does not resolve."""
    parts = _parts(url)
    host = parts.hostname
    infos = socket.getaddrinfo(host, _port(parts), type=socket.SOCK_STREAM)
    if not _allowed_by_operator(host):
        for info in infos:
            address = info[4][0]
            if _refused(address) and not _allow_listed(address):
                raise UnsafeDestination(
                    f"The webhook URL points to a private, loopback or link-local address ({host} -> {address}); "
                    "such destinations are refused. Use a public address, or ask the operator to allow-list the "
                    "host (WEBHOOK_ALLOWED_HOSTS).", details={"url": [url]})
    return infos[0][4][0]


def check_destination(url: str) -> None:
    """Raises UnsafeDestination (a clear 400 over the API) for URLs a webhook must not reach."""
    parts = _parts(url)
    if _allowed_by_operator(parts.hostname):
        return  # nothing to refuse; the host need not resolve from here yet
    try:
        checked_address(url)
    except socket.gaierror:
        raise UnsafeDestination(f"The webhook host '{parts.hostname}' does not resolve.",
                                details={"url": [url]}) from None


class _PinnedConnection(http.client.HTTPConnection):
    """An HTTP(S) connection to `address` for `host`: Host header, SNI and the certificate check use
    the name, the TCP connection goes to the address that was checked."""

    def __init__(self, host: str, port: int, *, address: str, tls: ssl.SSLContext | None, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address, self.tls = address, tls
        if tls is not None:
            self.default_port = 443  # the Host header leaves out the scheme's own port

    def connect(self):
        self.sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.host)


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
        address = checked_address(url)
    except UnsafeDestination as exc:
        raise TransportError(exc.message, permanent=True) from None
    except socket.gaierror as exc:  # DNS may well answer on the next attempt
        raise TransportError(f"gaierror: the webhook host does not resolve ({exc})") from None
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               **signing.headers(secrets, msg_id, body, timestamp)}
    conn = _PinnedConnection(parts.hostname, _port(parts), address=address, timeout=TIMEOUT_SECONDS,
                             tls=ssl.create_default_context() if parts.scheme == "https" else None)
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
