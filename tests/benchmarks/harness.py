"""What every benchmark module uses: timing helpers, data location, and the row format.

A benchmark module is `tests/benchmarks/bench_<name>.py` with `run() -> list[Row]`. Each row
carries its figure and the raw baseline measured in the same run, so the ratio is meaningful on
a noisy, shared machine. Repeat measurements and report medians.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHARED_DATA = REPO.parent / "shared" / "data"
REPO_DATA = REPO / "watchlists" / "demo_data"


def data_path(relative: str) -> Path:
    """A data file from ../shared/data when it is there, else the repository's own copy."""
    shared = SHARED_DATA / relative
    return shared if shared.exists() else REPO_DATA / relative


@dataclass
class Row:
    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline_value: float | None = None
    higher_is_better: bool = True
    target: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if not self.baseline_value or not self.value:
            return None
        return self.value / self.baseline_value

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ratio"] = self.ratio
        return d


def median_time(fn: Callable[[], object], repeat: int = 5) -> float:
    """Median wall time of fn over `repeat` runs, in seconds."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]
