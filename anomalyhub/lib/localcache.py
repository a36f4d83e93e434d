"""A per-process cache with a time to live, for lookups that nearly every request repeats (the API
key of the request, the series an ingest batch names).

Each process keeps its own entries for `<setting>` seconds (0 turns the cache off). The owner of
the data drops entries from model signals, so a change made in this process is seen at once; other
processes see it within the time to live. Callers that must not act on a stale entry check it
where it matters (see watchlists.services._advance_last_points)."""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Hashable
from typing import Any

from django.conf import settings
from django.db import transaction

_ALL: weakref.WeakSet = weakref.WeakSet()


def clear_all() -> None:
    """Empties every cache of this process (tests start from nothing, as a new process does)."""
    for cache in list(_ALL):
        cache.clear()


class TTLCache:
    def __init__(self, setting: str, default: float, max_entries: int = 10_000):
        self.setting, self.default, self.max_entries = setting, default, max_entries
        self._items: dict[Hashable, tuple[float, Any]] = {}
        _ALL.add(self)

    def ttl(self) -> float:
        return getattr(settings, self.setting, self.default)

    def get(self, key: Hashable) -> Any | None:
        hit = self._items.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def put(self, key: Hashable, value: Any) -> None:
        ttl = self.ttl()
        if ttl <= 0:
            return
        if len(self._items) >= self.max_entries:
            self._items.clear()  # bounded: a burst of distinct keys costs lookups, never memory
        self._items[key] = (time.monotonic() + ttl, value)

    def discard(self, key: Hashable) -> None:
        self._items.pop(key, None)

    def discard_where(self, predicate: Callable[[Hashable, Any], bool]) -> None:
        for key, (_, value) in list(self._items.items()):
            if predicate(key, value):
                self._items.pop(key, None)

    def forget(self, predicate: Callable[[Hashable, Any], bool]) -> None:
        """What a model signal calls: drops the matching entries now, and again when the change
        commits, since another thread may have cached the old row in between."""
        self.discard_where(predicate)
        transaction.on_commit(lambda: self.discard_where(predicate))

    def clear(self) -> None:
        self._items.clear()
