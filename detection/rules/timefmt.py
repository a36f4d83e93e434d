"""Text timestamps <-> integer times, for CSV input and output (the rules_eval command).

Precision follows the text, as DolphinDB's types do: `2018.10.08T01:01:01.003` (TIMESTAMP) is
milliseconds, no fraction (DATETIME) is seconds, 4 to 9 fraction digits (NANOTIMESTAMP)
nanoseconds, `2018.10.08T01:01` minutes and a bare date days. Dates may use '-' or '.', and the
date/time separator 'T' or a space. Times are naive (no zone), counted from 1970-01-01.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

_PATTERN = re.compile(r"(\d{4})([-.])(\d{2})\2(\d{2})(?:([T ])(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?)?")
_RANK = ["date", "min", "s", "ms", "ns"]  # coarse to fine
_PER_DAY = {"date": 1, "min": 1440, "s": 86_400, "ms": 86_400_000, "ns": 86_400_000_000_000}
_FRACTION_DIGITS = {"ms": 3, "ns": 9}


@dataclass(frozen=True)
class TimeFormat:
    precision: str
    date_sep: str = "-"
    time_sep: str = "T"

    def format(self, value: int) -> str:
        """Render an integer time in this precision and style."""
        days, rest = divmod(int(value), _PER_DAY[self.precision])
        text = str(np.datetime64(days, "D")).replace("-", self.date_sep)
        if self.precision == "date":
            return text
        units = _PER_DAY[self.precision] // 86_400 if self.precision != "min" else None
        if units is None:
            return f"{text}{self.time_sep}{rest // 60:02d}:{rest % 60:02d}"
        seconds, fraction = divmod(rest, units)
        clock = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
        digits = _FRACTION_DIGITS.get(self.precision)
        return f"{text}{self.time_sep}{clock}" + (f".{fraction:0{digits}d}" if digits else "")


def parse_times(texts: Sequence[str], precision: str | None = None) -> tuple[np.ndarray, TimeFormat]:
    """Parse timestamps into int64 in the finest precision found (or `precision`); raises
    ValueError naming the first text that is not a timestamp."""
    parts = []
    for i, text in enumerate(texts):
        m = _PATTERN.fullmatch(text.strip())
        if m is None:
            raise ValueError(f"row {i + 1}: cannot parse time {text!r}")
        parts.append(m)
    if not parts:
        return np.zeros(0, dtype=np.int64), TimeFormat(precision or "ms")
    if precision is None:
        precision = max((_precision_of(m) for m in parts), key=_RANK.index)
    first = parts[0]
    fmt = TimeFormat(precision, first.group(2), first.group(5) or "T")
    values = np.array([_to_int(m, precision, texts[i]) for i, m in enumerate(parts)], dtype=np.int64)
    return values, fmt


def _precision_of(m: re.Match) -> str:
    if m.group(6) is None:
        return "date"
    if m.group(8) is None:
        return "min"
    fraction = m.group(9)
    if not fraction:
        return "s"
    return "ms" if len(fraction) <= 3 else "ns"


def _to_int(m: re.Match, precision: str, text: str) -> int:
    year, month, day = m.group(1), m.group(3), m.group(4)
    try:
        days = int(np.datetime64(f"{year}-{month}-{day}", "D").astype(np.int64))
    except ValueError:
        raise ValueError(f"invalid date in {text!r}") from None
    hours, minutes, seconds = (int(m.group(g) or 0) for g in (6, 7, 8))
    if hours > 23 or minutes > 59 or seconds > 59:
        raise ValueError(f"invalid time of day in {text!r}")
    nanos = int((m.group(9) or "").ljust(9, "0") or 0)
    total_ns = ((days * 24 + hours) * 60 + minutes) * 60 * 10**9 + seconds * 10**9 + nanos
    unit_ns = 86_400 * 10**9 // _PER_DAY[precision]
    if total_ns % unit_ns:
        raise ValueError(f"{text!r} is finer than the {precision} precision")
    return total_ns // unit_ns
