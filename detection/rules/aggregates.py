"""Window aggregates computed for many windows at once.

Each window is a slice [lo, hi) of the engine's key-sorted row buffer. The slices are gathered
into one flat array (windows overlap when windowSize > step) and reduced with `ufunc.reduceat`;
percentiles sort every window with one lexsort. Each window's value is computed from its own
rows in arrival order only, so it is bit-for-bit the same however the stream was batched.
Like DolphinDB, aggregates ignore NULLs; an aggregate over no values is NULL (count is 0).
"""

from __future__ import annotations

import numpy as np

from .analyze import constant_value
from .nodes import Call, render
from .plan import aggregate_inputs


class Windows:
    """A set of windows as slices of buffered columns; gathers and reduces them."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray):
        lens = hi - lo
        self.size = len(lo)
        self.filled = (lens > 0).nonzero()[0]  # empty windows get NULL without reducing
        if len(self.filled) < self.size:
            lens, lo = lens.take(self.filled), lo.take(self.filled)
        self.lens = lens
        self.starts = np.cumsum(lens) - lens
        self.index = np.repeat(lo - self.starts, lens) + np.arange(int(lens.sum()))
        self._gathered: dict[str, np.ndarray] = {}
        self._sorted: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def gather(self, name: str, column: np.ndarray) -> np.ndarray:
        if name not in self._gathered:
            self._gathered[name] = column.take(self.index)  # ~2x faster than column[self.index]
        return self._gathered[name]

    def reduce(self, ufunc, values: np.ndarray, dtype=None) -> np.ndarray:
        if not len(self.starts):
            return np.empty(0, dtype=dtype or values.dtype)
        return ufunc.reduceat(values, self.starts, dtype=dtype)

    def spread(self, filled_values: np.ndarray, empty_value=np.nan) -> np.ndarray:
        """Per-window array from values of the non-empty windows."""
        if len(self.filled) == self.size:
            return filled_values.astype(np.float64, copy=False)
        out = np.full(self.size, empty_value, dtype=np.float64)
        out[self.filled] = filled_values
        return out

    def sorted_values(self, name: str, column: np.ndarray) -> np.ndarray:
        """The gathered values of `column` sorted within each window, NULLs last.

        Rather than lexsort the (larger, overlapping) gathered array by (window, value), rank
        the buffer once and sort one int64 key window * n + rank, which numpy sorts far faster.
        """
        if name not in self._sorted:
            n = len(column)
            by_value = np.argsort(column)  # NaN sorts last
            rank = np.empty(n, dtype=np.int64)
            rank[by_value] = np.arange(n)
            window = np.repeat(np.arange(len(self.lens), dtype=np.int64), self.lens)
            keys = np.sort(window * n + rank[self.index])
            self._sorted[name] = column[by_value[keys % n]]
        return self._sorted[name]


def compute(call: Call, windows: Windows, columns: dict[str, np.ndarray]) -> np.ndarray:
    """The value of aggregate `call` for every window, given the buffered input columns keyed
    by their canonical text."""
    names = [render(a) for a in aggregate_inputs(call)]
    args = [windows.gather(n, columns[n]) for n in names]
    # Checking the buffer for NULLs is cheaper than masking the (overlapping, larger) gathered
    # windows, and without NULLs every count is the window's length.
    nulls = any(_has_nan(columns[n]) for n in names)
    with np.errstate(all="ignore"):
        return windows.spread(_reduce(call, windows, names[0], columns[names[0]], args, nulls))


def _has_nan(values: np.ndarray) -> bool:
    return len(values) > 0 and bool(np.isnan(np.minimum.reduce(values)))  # minimum propagates NaN


def _reduce(call: Call, w: Windows, name: str, column: np.ndarray, args: list[np.ndarray], nulls: bool) -> np.ndarray:
    x = args[0]
    valid = None
    if nulls:
        valid = ~np.isnan(x)
        if call.name == "wavg":
            valid &= ~np.isnan(args[1])
    count = w.lens if valid is None else w.reduce(np.add, valid, dtype=np.int64)
    if call.name == "count":
        return count.astype(np.float64)
    if call.name in ("first", "last"):
        return x[w.starts if call.name == "first" else w.starts + w.lens - 1]
    if call.name in ("min", "max"):
        return w.reduce(np.fmin if call.name == "min" else np.fmax, x)
    if call.name in ("med", "percentile"):
        p = 50.0 if call.name == "med" else constant_value(call.args[1])
        how = call.args[2].value if len(call.args) == 3 else "linear"
        return _percentile(w.sorted_values(name, column), w.starts, count, p, how)
    clean = x if valid is None else np.where(valid, x, 0.0)
    # Without NULLs every (non-empty) window has values, so there is nothing to mask.
    with_values = count if valid is None else np.where(count > 0, count, 1)
    if call.name == "wavg":
        weights = args[1] if valid is None else np.where(valid, args[1], 0.0)
        total = w.reduce(np.add, weights)
        out = w.reduce(np.add, clean * weights) / np.where(total == 0, np.nan, total)
        return np.where(count > 0, out, np.nan)
    total = w.reduce(np.add, clean)
    if call.name == "sum":
        return total if valid is None else np.where(count > 0, total, np.nan)
    mean = total / with_values
    if call.name == "avg":
        return mean if valid is None else np.where(count > 0, mean, np.nan)
    # var/std: sample (n - 1) estimators, two-pass for accuracy.
    dev = np.repeat(mean, w.lens)
    np.subtract(x, dev, out=dev)  # in place: these arrays are as long as all windows together
    if valid is not None:
        dev = np.where(valid, dev, 0.0)
    var = w.reduce(np.add, np.square(dev, out=dev)) / np.where(count > 1, count - 1, 1)
    var = np.where(count > 1, var, np.nan)
    return np.sqrt(var) if call.name == "std" else var


def _percentile(sorted_x: np.ndarray, starts: np.ndarray, count: np.ndarray, p: float, how: str) -> np.ndarray:
    """DolphinDB percentile over each window's non-NULL values (sorted, NULLs last): with
    pos = p/100 * (n - 1), i = floor(pos), linear gives x[i] + (x[i+1] - x[i]) * (pos - i)."""
    n = np.maximum(count, 1)
    pos = p / 100.0 * (n - 1)
    i = np.floor(pos).astype(np.int64)
    frac = pos - i
    low = sorted_x[starts + i]
    high = sorted_x[starts + np.minimum(i + 1, n - 1)]
    if how == "linear":
        out = low + (high - low) * frac
    elif how == "lower":
        out = low
    elif how == "higher":
        out = np.where(frac > 0, high, low)
    elif how == "nearest":
        out = np.where(frac > 0.5, high, low)  # ties go to the lower value, as DolphinDB does
    else:
        out = np.where(frac > 0, (low + high) / 2, low)
    return np.where(count > 0, out, np.nan)
