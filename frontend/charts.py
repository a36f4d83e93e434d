"""Server-rendered SVG sparklines (the series page draws with lightweight-charts instead)."""

from __future__ import annotations

import numpy as np


def line_path(values: np.ndarray, width: float, height: float, pad: float = 2.0) -> str:
    """An SVG path `d` for values scaled into width x height (NaNs skipped)."""
    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if finite.sum() < 2:
        return ""
    lo, hi = np.nanmin(values), np.nanmax(values)
    span = (hi - lo) or 1.0
    xs = np.linspace(pad, width - pad, len(values))
    ys = height - pad - (values - lo) / span * (height - 2 * pad)
    parts = [f"{'M' if i == 0 or not finite[i - 1] else 'L'}{x:.1f},{y:.1f}"
             for i, (x, y) in enumerate(zip(xs, ys, strict=True)) if finite[i]]
    return " ".join(parts)


def downsample(values: np.ndarray, points: int) -> str:
    """At most `points` finite values (the last of each stride), comma-separated for a data attribute."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) > points:
        stride = -(-len(values) // points)  # ceil: at most `points` values remain
        values = values[::-1][::stride][::-1]  # counted from the end, so the latest value stays
    return ",".join(f"{v:.6g}" for v in values)
