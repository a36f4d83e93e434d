"""Which windows a batch needs, in DolphinDB's terms.

Windows are [end - windowSize, end) with ends at origin + k*step, k >= 0, where origin is
the end of the first window (alignment.first_window_end). All keys share the grid.

- agg_column: a row at time t uses the latest window that ended at or before t (k = last_closed(t)).
  That window may hold no rows of the key; its aggregates are then NULL.
- agg_const: a key's window is computed when the first row of that key at or past its end
  arrives ("the engine waits for new data"), and only if the key has rows in it.
"""

from __future__ import annotations

import numpy as np

from .grouping import NEVER, PairIndex


class Grid:
    def __init__(self, origin: int, step: int, size: int):
        self.origin, self.step, self.size = origin, step, size

    def last_closed(self, t: np.ndarray) -> np.ndarray:
        """k of the latest window ending at or before t; -1 when none has (or never seen)."""
        t = np.asarray(t, dtype=np.int64)
        safe = np.where(t == NEVER, self.origin - self.step, t)
        return np.maximum((safe - self.origin) // self.step, -1)

    def end(self, k: np.ndarray) -> np.ndarray:
        return self.origin + k * self.step

    def retain_from(self, last_time: np.ndarray) -> np.ndarray:
        """Oldest time a key's future rows can still need: the start of its latest closed window."""
        return self.end(np.maximum(self.last_closed(last_time), 0)) - self.size


def previous_windows(grid: Grid, codes: np.ndarray, times: np.ndarray):
    """For key-sorted new rows: (rows that have a previous window, window of each such row,
    window codes, window ks). Rows of a key are time-ordered, so equal windows are adjacent."""
    k = grid.last_closed(times)
    rows = np.flatnonzero(k >= 0)
    kk, cc = k[rows], codes[rows]
    first = np.ones(len(rows), dtype=bool)
    first[1:] = (kk[1:] != kk[:-1]) | (cc[1:] != cc[:-1])
    return rows, np.cumsum(first) - 1, cc[first], kk[first]


class StepRuns:
    """Buffered rows sorted by (key, time), seen as runs of rows with the same key and step
    bucket b = (t - origin) // step. Window bounds fall on step boundaries, so a window's rows
    are found by searching the runs (about one per key and step), not the rows."""

    def __init__(self, grid: Grid, codes: np.ndarray, times: np.ndarray):
        bucket = times - grid.origin
        bucket //= grid.step  # in place: this runs over the whole buffer every batch
        first = np.ones(len(codes), dtype=bool)
        np.not_equal(bucket[1:], bucket[:-1], out=first[1:])
        first[1:] |= codes[1:] != codes[:-1]
        starts = first.nonzero()[0]  # then take(): cheaper than two boolean-mask selections
        self.codes, self.buckets = codes.take(starts), bucket.take(starts)
        self._bounds = np.append(starts, len(codes))
        self._index = PairIndex(self.codes, self.buckets)

    def first_row(self, codes: np.ndarray, ks: np.ndarray) -> np.ndarray:
        """Each key's first buffered row in step bucket k or later, i.e. at or past grid end k
        (the buffer's length when there is none)."""
        return self._bounds.take(self._index.find(codes, ks))


def closed_window_spans(grid: Grid, runs: StepRuns, k_old: np.ndarray, k_new: np.ndarray):
    """Windows that hold rows and closed in this batch (k_old < k <= k_new per key), as runs of
    consecutive ks: (codes, first k, count) per (key, bucket) run, in order. Nothing is enumerated,
    so a window spanning a long gap costs its run, not one entry per step.

    A row in step bucket b lies in windows b+1 .. b+windowSize/step, so only the distinct
    (key, bucket) runs matter. Their window ranges overlap in order, so each contributes only
    the windows after its predecessor's last one, which lists each window once and in order.
    """
    codes, bucket = runs.codes, runs.buckets
    if len(codes) == 0:
        return codes, codes, codes
    kf = np.maximum(np.maximum(bucket + 1, k_old.take(codes) + 1), 0)
    kl = np.minimum(bucket + grid.size // grid.step, k_new.take(codes))
    before = np.empty_like(kl)
    before[0] = -1
    before[1:] = kl[:-1]
    new_key = np.ones(len(codes), dtype=bool)
    new_key[1:] = codes[1:] != codes[:-1]
    before[new_key] = -1
    start = np.maximum(kf, before + 1)
    return codes, start, np.maximum(kl - start + 1, 0)


def closed_windows(codes: np.ndarray, start: np.ndarray, count: np.ndarray):
    """The windows (codes, ks) of closed_window_spans, one entry each."""
    total = int(count.sum())
    offsets = np.cumsum(count) - count
    ks = np.repeat(start - offsets, count) + np.arange(total)
    return np.repeat(codes, count), ks
