"""A per-process cache with a time to live, for lookups that nearly every request repeats (the API
key of the request, the series an ingest batch names): cachetools' TLRUCache behind a lock.

Each process keeps its own entries for `<setting>` seconds (0 turns the cache off), read when an
entry is stored, so an override applies at once. The owner of the data drops entries from model
signals, so a change made in this process is seen at once; other processes see it within the time
to live. Callers that must not act on a stale entry check it where it matters (see
watchlists.services._advance_last_points)."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from cachetools import TLRUCache
from django.conf import settings
from django.db import transaction

_ALL: weakref.WeakSet = weakref.WeakSet()


def clear_all() -> None:
    """Empties every cache of this process (tests start from nothing, as a new process does)."""
    for cache in list(_ALL):
        cache.clear()


class TTLCache:
    def __init__(self, setting: str, default: float, max_entries: int = 10_000):
        # TLRUCache, not TTLCache: the time to live is a setting read per entry, not fixed at import.
        self.entries = TLRUCache(max_entries, lambda _key, _value, now: now + getattr(settings, setting, default))
        self.lock = threading.Lock()  # cachetools' caches are not thread-safe; requests run on threads
        _ALL.add(self)

    def get(self, key: Hashable) -> Any | None:
        with self.lock:
            return self.entries.get(key)

    def put(self, key: Hashable, value: Any) -> None:
        with self.lock:
            self.entries[key] = value  # an entry whose time to live is 0 is not stored

    def discard_where(self, predicate: Callable[[Hashable, Any], bool]) -> None:
        with self.lock:
            for key in [k for k, v in self.entries.items() if predicate(k, v)]:
                del self.entries[key]

    def forget(self, predicate: Callable[[Hashable, Any], bool]) -> None:
        """What a model signal calls: drops the matching entries now, and again when the change
        commits, since another thread may have cached the old row in between."""
        self.discard_where(predicate)
        transaction.on_commit(lambda: self.discard_where(predicate))

    def expire(self, at: float) -> None:
        """Drops the entries that have expired by `at` (time.monotonic())."""
        with self.lock:
            self.entries.expire(at)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
