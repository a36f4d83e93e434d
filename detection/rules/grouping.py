"""Per-key bookkeeping on key-sorted arrays: key codes, late rows, (key, time) search."""

from __future__ import annotations

import numpy as np

NEVER = np.iinfo(np.int64).min  # last_time of a key that has not been seen


class KeyRegistry:
    """Stable integer codes for key values. Values are kept as plain Python objects (str, int)
    so outputs and snapshots carry them unchanged."""

    _LUT_LIMIT = 1 << 24  # small non-negative integer keys (series ids) use a lookup table

    def __init__(self, values=()):
        self.values: list = list(values)
        self._codes = {v: i for i, v in enumerate(self.values)}
        self._lut: np.ndarray | None = None
        self._known = (0, -1)  # a range of ints all registered (keys are never removed)

    def __len__(self) -> int:
        return len(self.values)

    def encode(self, keys: np.ndarray | None, n: int, rows: np.ndarray | None = None) -> np.ndarray:
        """Codes for a batch's key column (all 0 for a rule without keyColumn). Every key of the
        batch is registered; with `rows` (indexes into the batch) only those rows' codes are
        returned, which for small integer keys skips the per-row lookup of the others."""
        if keys is None:
            if not self.values:
                self._add(None)
            return np.zeros(n if rows is None else len(rows), dtype=np.int64)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        if keys.dtype.kind in "iu":
            low, top = int(np.minimum.reduce(keys)), int(np.maximum.reduce(keys))  # skips .min()'s wrappers
            if low >= 0 and top < self._LUT_LIMIT:
                return self._encode_small_ints(keys, low, top, rows)
        try:
            uniq, inverse = np.unique(keys, return_inverse=True)
        except TypeError:  # e.g. None or numbers mixed with strings in an object column
            raise ValueError("key column values must all be of one type (str or int)") from None
        codes = np.array([self._codes.get(v, -1) for v in uniq.tolist()], dtype=np.int64)
        for i in np.flatnonzero(codes < 0):
            codes[i] = self._add(uniq[i].item() if hasattr(uniq[i], "item") else uniq[i])
        inverse = inverse.reshape(-1)
        return codes[inverse if rows is None else inverse[rows]]

    def _encode_small_ints(self, keys: np.ndarray, low: int, top: int, rows: np.ndarray | None) -> np.ndarray:
        """Codes by table lookup: no sort, unlike np.unique."""
        if self._lut is None or len(self._lut) <= top:
            self._lut = np.full(max(top + 1, 2 * len(self._lut) if self._lut is not None else 0), -1,
                                dtype=np.int64)
            for value, code in self._codes.items():
                if type(value) is int and 0 <= value < len(self._lut):
                    self._lut[value] = code
        lut = self._lut
        if self._known[0] <= low and top <= self._known[1]:
            pass  # all keys are known: the usual case once every series has been seen
        elif top - low <= len(keys) and bool((lut[low:top + 1] >= 0).all()):
            self._known = (low, top)  # every value in [low, top] is known (dense ids): O(top - low), not O(rows)
        elif not self.values:
            self._add_all(keys)  # first batch: every key is new, no lookup needed to find them
        else:
            codes = lut.take(keys)  # take: ~1.5x faster than fancy indexing for a 1-D gather
            missing = codes < 0
            if not missing.any():
                return codes if rows is None else codes[rows]
            self._add_all(keys[missing])
        return lut.take(keys if rows is None else keys.take(rows))

    def _add_all(self, new_keys: np.ndarray) -> None:
        """Register unknown small integer keys in ascending order, as np.unique would list them."""
        seen = np.zeros(len(self._lut), dtype=bool)  # O(n) where np.unique would sort
        seen[new_keys] = True
        for value in np.flatnonzero(seen).tolist():
            self._add(value)

    def _add(self, value) -> int:
        code = self._codes[value] = len(self.values)
        self.values.append(value)
        if self._lut is not None and type(value) is int and 0 <= value < len(self._lut):
            self._lut[value] = code
        return code


def key_order(codes: np.ndarray) -> np.ndarray:
    """Stable argsort of key codes; a radix sort when the codes fit in 16 bits."""
    if len(codes) and int(codes.max()) < 1 << 16:
        return np.argsort(codes.astype(np.uint16), kind="stable")
    return np.argsort(codes, kind="stable")


class SortedMerge:
    """Merges rows sorted by key code into a buffer sorted the same way, each new row after the
    buffered rows of its key. Positions are computed once and applied to every column."""

    def __init__(self, old_codes: np.ndarray, new_codes: np.ndarray):
        self.empty = not len(old_codes)
        if self.empty:
            return
        # Buffered rows with a code <= c, by c: counting is cheaper than searchsorted.
        at_or_below = np.cumsum(np.bincount(old_codes, minlength=int(new_codes[-1]) + 1 if len(new_codes) else 0))
        self.positions = at_or_below.take(new_codes) + np.arange(len(new_codes))
        self.old_slots = np.ones(len(old_codes) + len(new_codes), dtype=bool)
        self.old_slots[self.positions] = False

    def new_rows(self, merged_positions: np.ndarray) -> np.ndarray:
        """Indexes among the new rows of the new rows at these positions of the merged buffer."""
        return merged_positions if self.empty else np.searchsorted(self.positions, merged_positions)

    def __call__(self, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        if self.empty:
            return new
        out = np.empty(len(self.old_slots), dtype=np.result_type(old, new))
        out[self.positions] = new
        out[self.old_slots] = old
        return out


def segment_bounds(sorted_codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First and last index of each run of equal codes."""
    n = len(sorted_codes)
    change = np.flatnonzero(sorted_codes[1:] != sorted_codes[:-1]) + 1
    starts = np.concatenate(([0], change)) if n else change
    ends = np.concatenate((change - 1, [n - 1])) if n else change
    return starts, ends


def late_rows(codes: np.ndarray, times: np.ndarray, last_time: np.ndarray) -> np.ndarray | None:
    """Rows older than an earlier row of their key (in this batch or before); None if none.

    Deciding lateness only from earlier rows of the same key keeps the result independent of
    how the stream is cut into batches.
    """
    n = len(times)
    if n == 0:
        return None
    if (n < 2 or bool(np.all(times[1:] >= times[:-1]))) and times[0] >= last_time.max(initial=NEVER):
        return None  # the usual case: time-ordered input, newer than everything seen
    order = np.argsort(codes, kind="stable")
    t, c = times[order], codes[order]
    rank = np.unique(t, return_inverse=True)[1].reshape(-1)
    # Running max of (key, rank) restarts at each key because keys dominate the composite.
    composite = c * (int(rank.max()) + 1) + rank
    late_sorted = (composite < np.maximum.accumulate(composite)) | (t < last_time[c])
    if not late_sorted.any():
        return None
    late = np.empty(n, dtype=bool)
    late[order] = late_sorted
    return late


class PairIndex:
    """Searches data sorted by (code, time): find() gives, for each query (code, time), the index
    of the first row with that code and a time >= the query time (searchsorted 'left')."""

    def __init__(self, codes: np.ndarray, times: np.ndarray):
        self.codes, self.times = codes, times
        self.composite = None
        if len(codes):
            self.tmin, self.tmax = int(times.min()), int(times.max())
            self.span = self.tmax - self.tmin + 2
            self.top = int(codes[-1])
            if self.span * (self.top + 1) < 2**62:
                # One int64 key per row: code * span + offset, built once per batch.
                self.composite = codes * np.int64(self.span) + (times - self.tmin)

    def find(self, codes: np.ndarray, times: np.ndarray) -> np.ndarray:
        if len(self.codes) == 0 or len(codes) == 0:
            return np.zeros(len(codes), dtype=np.int64)
        if self.composite is not None and int(codes.max()) <= self.top:
            # Clipping queries to [tmin-1, tmax+1] keeps them inside their code's range
            # without changing the answer.
            clipped = np.minimum(np.maximum(times, self.tmin - 1), self.tmax + 1)  # np.clip costs ~10 us more
            query = codes * np.int64(self.span) + (clipped - self.tmin)
            return np.searchsorted(self.composite, query, side="left")
        out = np.empty(len(codes), dtype=np.int64)  # rare: times too far apart for one key
        for code in np.unique(codes):
            lo, hi = np.searchsorted(self.codes, [code, code + 1])
            mask = codes == code
            out[mask] = lo + np.searchsorted(self.times[lo:hi], times[mask], side="left")
        return out
