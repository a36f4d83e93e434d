"""Time precisions and DolphinDB's alignment of the first window (seed 002's tables).

Every table maps `step` to an alignment size equal to the upper bound of the band `step` falls
in, with one open-ended band at the top, so each is stored as (band upper bounds, beyond).
"""

from __future__ import annotations

from .errors import RuleSyntaxError

_PRECISION_NAMES = {
    "s": "s", "second": "s", "seconds": "s", "sec": "s", "datetime": "s",
    "ms": "ms", "millisecond": "ms", "milliseconds": "ms", "timestamp": "ms", "time": "ms",
    "ns": "ns", "nanosecond": "ns", "nanoseconds": "ns", "nanotimestamp": "ns", "nanotime": "ns",
    "min": "min", "minute": "min", "minutes": "min",
    "date": "date", "day": "date", "d": "date",
}
# Units per second, for the command's formatting; "date" counts days.
UNITS_PER_SECOND = {"s": 1, "ms": 1_000, "ns": 1_000_000_000}

_S = 1_000_000_000  # one second in nanoseconds
_TABLES = {
    # precision: (bands, beyond) without roundTime, and (threshold, bands, beyond) with it
    "s": (((2, 3, 5, 10, 15, 20, 30), 60),
          (30, (60, 120, 180, 300, 600, 900, 1200, 1800), 3600)),
    "ms": (((2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 3000, 5000, 10000, 15000, 20000, 30000),
            60000),
           (30000, (60000, 120000, 300000, 600000, 900000, 1200000, 1800000), 3600000)),
    "ns": (((2, 5, 10, 20, 25, 50, 100, 200, 250, 500), 1000),
           (1000, (1_000_000, 10_000_000, 100_000_000, _S, 2 * _S, 3 * _S, 5 * _S, 10 * _S, 15 * _S,
                   20 * _S, 30 * _S), 60 * _S)),
}
_TABLES["min"] = _TABLES["s"]  # MINUTE uses the same numbers as SECOND/DATETIME


def normalize_precision(precision: str) -> str:
    """"ms", "TIMESTAMP", "millisecond", ... -> one of "s", "ms", "ns", "min", "date"."""
    name = _PRECISION_NAMES.get(str(precision).strip().lower())
    if name is None:
        raise RuleSyntaxError(f"unknown time precision {precision!r}; use s, ms, ns, min or date")
    return name


def alignment_size(precision: str, step: int, round_time: bool = True) -> int:
    """Alignment size for the first window, per seed 002's tables.

    Band bounds are read as (lower, upper]: with roundTime the nanosecond table's first band
    "1000ns~1ms" starts above 1000ns, so step=1000ns still aligns to 1000ns. DATE windows are
    not adjusted (size 1).
    """
    precision = normalize_precision(precision)
    if precision == "date":
        return 1
    (bands, beyond), (threshold, round_bands, round_beyond) = _TABLES[precision]
    if round_time and step > threshold:
        bands, beyond = round_bands, round_beyond
    for upper in bands:
        if step <= upper:
            return upper
    return beyond


def first_window_end(first_time: int, precision: str, step: int, round_time: bool = True) -> int:
    """End of the first window: x/alignmentSize*alignmentSize + step - windowSize is its start,
    and windows are windowSize long, so the end does not depend on windowSize."""
    size = alignment_size(precision, step, round_time)
    return (first_time // size) * size + step
