"""NAB (Numenta Anomaly Benchmark, MIT licence) scoring of a detector, in process.

The corpus is read from `NAB_ROOT`, else `../shared/data/nab` beside the project; absent, the
evaluation says so and skips. Protocol, as NAB's own runner and `nab_eval.py`: per file, fit on
the probationary rows (15 %, at most 750), score every row causally; then NAB's rules:
- a detection inside a labelled window earns the scaled sigmoid of its position (early = more),
  only the best detection per window counts; a window with none costs `fnWeight`;
- every flagged row outside a window costs `fpWeight` times the sigmoid of its distance from
  the previous window (a late echo of an event costs less);
- rows in the probationary period are not scored;
- one threshold for the whole corpus per profile, the best one; the result is normalised so
  that flagging nothing scores 0 and a perfect detector 100.
Per-category figures apply the corpus threshold to the category's files.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from detection.detectors import get_detector_class

from .data import REPO

__all__ = ["ANCHORS", "evaluate_nab", "find_root"]

# Published NAB v1.1 scores (standard, low FP, low FN), for the report.
ANCHORS = {"ARTime": (74.9, 65.1, 80.4), "Numenta HTM": (70.5, 62.6, 75.2), "CAD OSE": (69.9, 67.0, 73.2),
           "Windowed Gaussian": (39.6, 20.9, 47.4), "null": (0.0, 0.0, 0.0)}
PROFILE_NAMES = {"standard": "standard", "reward_low_FP_rate": "low FP", "reward_low_FN_rate": "low FN"}


def find_root() -> Path | None:
    for root in (os.environ.get("NAB_ROOT"), REPO.parent / "shared" / "data" / "nab"):
        if root and (Path(root) / "labels" / "combined_windows.json").exists():
            return Path(root)
    return None


def probation(n: int) -> int:
    return int(min(math.floor(0.15 * n), 750))


def _sigmoid(y: float) -> float:
    return -1.0 if y > 3.0 else 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


@dataclass
class _File:
    category: str
    scores: np.ndarray
    weight_kind: list  # per scored row: (window id or None, position argument)


def _rows(n: int, windows: list[tuple[int, int]]) -> list[tuple]:
    """Per row after probation: ("in", window, relative position) or ("out", distance, width)."""
    out, k, prev, cur = [], 0, None, None
    for i in range(n):
        if cur is None and k < len(windows) and i == windows[k][0]:
            cur = windows[k]
            k += 1
        if cur is not None:
            L, R = cur
            row = ("in", L, -(R - i + 1) / (R - L + 1))
        else:
            row = ("out", None if prev is None else abs(i - prev[0]) / (prev[1] - 1), None)
        if i >= probation(n):
            out.append(row)
        if cur is not None and i == cur[1]:
            prev, cur = (cur[1], cur[1] - cur[0] + 1), None
    return out


def _weights(rows: list[tuple], w: dict) -> tuple[np.ndarray, list]:
    top = _sigmoid(-1.0)
    values, wids = [], []
    for kind, a, b in rows:
        if kind == "in":
            values.append(w["tpWeight"] * _sigmoid(b) / top)
            wids.append(a)
        else:
            values.append(-w["fpWeight"] if a is None else w["fpWeight"] * _sigmoid(a))
            wids.append(None)
    return np.array(values), wids


def _sweep(items: list[tuple[float, float, object]], w: dict) -> float:
    """Best threshold over the pooled (score, weight, window) rows."""
    items = sorted(items, key=lambda r: -r[0])
    best_in = {r[2]: -w["fnWeight"] for r in items if r[2] is not None}
    fp, total = 0.0, sum(best_in.values())
    best_thr, best = 1.1, total
    j = 0
    while j < len(items):
        v = items[j][0]
        while j < len(items) and items[j][0] == v:
            _, s, wid = items[j]
            if wid is None:
                fp += s
            elif s > best_in[wid]:
                total += s - best_in[wid]
                best_in[wid] = s
            j += 1
        if total + fp > best:
            best_thr, best = v, total + fp
    return best_thr


def _score_at(items: list, thr: float, w: dict, n_windows: int) -> float:
    best = {wid: -w["fnWeight"] for _, _, wid in items if wid is not None}
    fp = 0.0
    for a, s, wid in items:
        if a >= thr:
            if wid is None:
                fp += s
            else:
                best[wid] = max(best[wid], s)
    null, perfect = -w["fnWeight"] * n_windows, w["tpWeight"] * n_windows
    return 100.0 * (sum(best.values()) + fp - null) / (perfect - null)


def score_file(path: Path, detector: str, seed: int) -> np.ndarray:
    table = pd.read_csv(path)
    ts = pd.to_datetime(table["timestamp"], utc=True)
    order = np.argsort(ts.to_numpy(), kind="stable")
    frame = pd.DataFrame({"ts": ts.to_numpy()[order], "value": table["value"].to_numpy(float)[order]})
    det = get_detector_class(detector)(seed=seed)
    det.fit(frame.iloc[:max(1, probation(len(frame)))])
    det.reset_state()
    scores = np.empty(len(frame))
    scores[order] = det.score(frame).score
    return scores


def evaluate_nab(root: Path, detector: str, seed: int = 0, progress=None) -> dict:
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    profiles = {k: v["CostMatrix"] for k, v in json.loads((root / "config" / "profiles.json").read_text()).items()}
    files = sorted(windows)
    per_file = {}
    for rel in progress(files) if progress else files:
        path = root / "data" / rel
        table = pd.read_csv(path, usecols=["timestamp"])
        index = {pd.Timestamp(t): i for i, t in enumerate(table["timestamp"])}
        spans = [(index[pd.Timestamp(a)], index[pd.Timestamp(b)]) for a, b in windows[rel]]
        scores = score_file(path, detector, seed)
        rows = _rows(len(table), spans)
        per_file[rel] = (rel.split("/")[0], scores[len(table) - len(rows):], rows, len(spans))
    report = {}
    for pname, w in profiles.items():
        items_by_file = {}
        for rel, (_cat, scores, rows, _n) in per_file.items():
            values, wids = _weights(rows, w)
            items_by_file[rel] = list(zip(scores.tolist(), values.tolist(), [(rel, x) if x is not None else None
                                                                            for x in wids], strict=True))
        pooled = [x for items in items_by_file.values() for x in items]
        thr = _sweep(pooled, w)
        n_all = sum(n for *_, n in per_file.values())
        entry = {"score": round(_score_at(pooled, thr, w, n_all), 1), "threshold": thr, "categories": {}}
        for cat in sorted({c for c, *_ in per_file.values()}):
            rels = [r for r, (c, *_) in per_file.items() if c == cat]
            n_cat = sum(per_file[r][3] for r in rels)
            if n_cat:
                items = [x for r in rels for x in items_by_file[r]]
                entry["categories"][cat] = round(_score_at(items, thr, w, n_cat), 1)
        report[PROFILE_NAMES.get(pname, pname)] = entry
    return report
