"""Message ids and chunk bounds: how the pass orders points and cuts them into chunks.

A point's message id is ts_us * RANK_BITS + its rank among points with the same timestamp. A
chunk never splits a timestamp and the next read starts after the last one, so ids only grow and
a cursor (the last id read) says exactly what has been judged.
"""

from __future__ import annotations

import numpy as np
from django.conf import settings

RANK_BITS = 1024


def snapshot_interval() -> int:
    """Points per chunk: each chunk commits its anomalies, engine snapshots and cursor together."""
    return getattr(settings, "DETECTION_SNAPSHOT_INTERVAL", 10_000)


def message_ids(ts_us: np.ndarray) -> np.ndarray:
    repeats = ts_us[1:] == ts_us[:-1]
    if not repeats.any():  # the usual case: every timestamp distinct, every rank 0
        return ts_us * RANK_BITS
    n = len(ts_us)
    starts = np.flatnonzero(np.r_[True, ~repeats])
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    return ts_us * RANK_BITS + np.minimum(rank, RANK_BITS - 1)


def whole_timestamps(ts_us: np.ndarray, limit: int) -> int:
    """How many of the rows read (limit + extra) to take: at most `limit`, unless that would split
    one timestamp between two chunks."""
    if len(ts_us) <= limit:
        return len(ts_us)
    return int(np.searchsorted(ts_us, ts_us[limit - 1], side="right"))


def first_after(last_msg_id: int) -> int:
    """The first time (µs) a cursor at `last_msg_id` has not read yet."""
    return last_msg_id // RANK_BITS + 1 if last_msg_id >= 0 else 0
