"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

A secret is "whsec_" + base64 of 32 random bytes; the HMAC key is the decoded bytes. The signed
content is "{webhook-id}.{webhook-timestamp}.{body}" and the header carries space-separated
"v1,<base64 HMAC-SHA256>" entries: one per valid secret, so a receiver holding either the old or
the new secret verifies during a rotation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 5 * 60


class SignatureError(ValueError):
    pass


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(_key(secret), content, hashlib.sha256).digest()).decode()


def signature_header(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets_ if s)


def headers(secrets_: list[str], msg_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    timestamp = int(time.time()) if timestamp is None else timestamp
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature_header(secrets_, msg_id, timestamp, body)}


def verify(secret: str, headers_: dict[str, str], body: bytes, now: float | None = None) -> None:
    """Raises SignatureError unless one signature matches and the timestamp is recent (replays of
    old captured requests are refused). The procedure docs/webhooks.md documents."""
    h = {k.lower(): v for k, v in headers_.items()}
    try:
        msg_id, timestamp = h["webhook-id"], int(h["webhook-timestamp"])
        received = h["webhook-signature"].split()
    except (KeyError, ValueError):
        raise SignatureError("missing or malformed webhook headers") from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("timestamp outside the tolerance")
    expected = sign(secret, msg_id, timestamp, body)
    if not any(hmac.compare_digest(expected, sig) for sig in received):
        raise SignatureError("no matching signature")
