"""Per-organization concurrency caps for heavy work (backtests, exports), shared by every process.

A slot is a counter in the cache (Redis in production) per (kind, organization): taking one
increments it, and past the cap the increment is undone and the caller gets 429 with Retry-After.
One organization's heavy requests then occupy at most its cap of the server's threads, whatever
the others do. A process that dies holding a slot leaves the counter high; the counter expires
settings.ORG_SLOT_SECONDS after it was created, which bounds that loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache

from anomalyhub.lib.errors import ServiceError

RETRY_SECONDS = 10


class OrganizationBusy(ServiceError):
    status = 429
    code = "rate_limited"
    retry_after = RETRY_SECONDS


def _key(kind: str, organization_id: int) -> str:
    return f"org-slots:{kind}:{organization_id}"


def acquire(kind: str, organization_id: int, limit: int, setting: str) -> Callable[[], None]:
    """Takes one of the organization's `limit` slots of `kind`; returns the function that gives it
    back (call it once). Raises OrganizationBusy when all are taken."""
    key = _key(kind, organization_id)
    cache.add(key, 0, timeout=settings.ORG_SLOT_SECONDS)
    try:
        taken = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, timeout=settings.ORG_SLOT_SECONDS)
        taken = 1
    if taken > limit:
        _release(key)
        raise OrganizationBusy(
            f"Your organization is already running {limit} {kind}(s) at once, as many as {setting} allows; "
            f"retry in {RETRY_SECONDS} seconds.",
            details={"limit": limit, "setting": setting, "retry_after": RETRY_SECONDS})
    released = False

    def release() -> None:
        nonlocal released
        if not released:
            released = True
            _release(key)

    return release


def _release(key: str) -> None:
    try:
        cache.decr(key)
    except ValueError:  # the counter expired meanwhile: nothing to give back
        pass


@contextmanager
def slot(kind: str, organization_id: int, limit: int, setting: str) -> Iterator[None]:
    release = acquire(kind, organization_id, limit, setting)
    try:
        yield
    finally:
        release()
