"""Slows password and API-key guessing down to uselessness: failures are counted in the cache
(Redis in production, shared by every web process) and, past a limit, the caller gets 429.

- sign-in: per address, FAILED_LOGINS failures in LOGIN_WINDOW seconds (the same rule allauth applies
  to its own form, "5/5m/key"), on top of the per-client `auth` request throttle. Counting per address
  stops a botnet spreading guesses over many IPs; the price is that a flood can make one address wait
  the window out, which a password reset does not need.
- API keys: per client address, FAILED_KEYS bad keys in KEY_WINDOW seconds, after which bad keys get
  429 instead of 401. A key has ~190 bits of secret, so this is not what protects keys; it tells
  scanners clearly to stop, and never refuses a correct key (see authenticate_key).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from .models import ApiKey

FAILED_LOGINS, LOGIN_WINDOW = 5, 300
FAILED_KEYS, KEY_WINDOW = 20, 60


@dataclass
class TooManyAttempts(Exception):
    wait: int
    message: str


def _limits(kind: str) -> tuple[int, int]:
    overrides = getattr(settings, "BRUTEFORCE_LIMITS", {})
    default = {"login": (FAILED_LOGINS, LOGIN_WINDOW), "api-key": (FAILED_KEYS, KEY_WINDOW)}[kind]
    return tuple(overrides.get(kind, default))


def _key(kind: str, ident: str) -> str:
    return f"bruteforce:{kind}:{ident}"


def check(kind: str, ident: str | None) -> None:
    """Raises TooManyAttempts when `ident` used up its failures for this window."""
    if not ident:
        return
    limit, window = _limits(kind)
    if (cache.get(_key(kind, ident)) or 0) >= limit:
        what = "sign-ins for this address" if kind == "login" else "API keys from your address"
        raise TooManyAttempts(window, f"Too many failed {what}; wait {window} seconds and try again"
                              + (", or reset your password." if kind == "login" else "."))


def failed(kind: str, ident: str | None) -> None:
    if not ident:
        return
    _, window = _limits(kind)
    key = _key(kind, ident)
    cache.add(key, 0, timeout=window)  # the window starts at the first failure
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=window)


def succeeded(kind: str, ident: str | None) -> None:
    if ident:
        cache.delete(_key(kind, ident))


def authenticate_key(raw: str, client: str | None) -> ApiKey | None:
    """accounts.authentication.authenticate_key, counting bad keys per client address.

    A correct key is never refused: clients behind one NAT or proxy address as a scanner keep
    working; only the scanner's wrong keys turn from 401 into 429."""
    from .authentication import authenticate_key as lookup

    key = lookup(raw)
    if key is None:
        check("api-key", client)
        failed("api-key", client)
    return key
