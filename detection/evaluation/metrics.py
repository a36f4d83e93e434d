"""Event-level matching of flagged points against labelled anomalies.

- Predicted events: maximal runs of flagged points, where runs separated by at most
  `MERGE_GAP` unflagged points are one event (a detector that flickers on one anomaly raises
  one alert, which is what an operator sees).
- A label [start, end] is detected when a predicted event overlaps [start - TOL, end + TOL].
  The tolerance allows an alert one or two bars late (a stuck feed is only visible after a
  while; a level shift is flagged on the first bar after it).
- A predicted event is a true positive when it overlaps some label's tolerance window, else a
  false positive. Only predictions from the first scored row after training are counted.
- Overall: precision = TP events / predicted events, recall = detected labels / labels,
  F1 their harmonic mean, summed over all series (micro average).
- Per kind: recall over that kind's labels; precision as if only that kind had been injected
  (TP events matching that kind / (those + all false positives)). Kind F1 uses both.
"""

from __future__ import annotations

import numpy as np

__all__ = ["MERGE_GAP", "TOL", "events", "match"]

MERGE_GAP = 3
TOL = 3


def events(flags: np.ndarray, first: int = 0) -> list[tuple[int, int]]:
    idx = np.flatnonzero(np.asarray(flags, dtype=bool))
    idx = idx[idx >= first]
    out: list[tuple[int, int]] = []
    for i in idx:
        if out and i - out[-1][1] <= MERGE_GAP + 1:
            out[-1] = (out[-1][0], int(i))
        else:
            out.append((int(i), int(i)))
    return out


def match(flags: np.ndarray, labels: list, first: int) -> dict:
    """Counts for one series: tp/fp events, detected labels, per kind."""
    preds = events(flags, first)
    windows = [(lab.start - TOL, lab.end + TOL) for lab in labels]
    hit_label = [False] * len(labels)
    tp_kind: dict[str, int] = {}
    fp = 0
    for s, e in preds:
        matched = [j for j, (ws, we) in enumerate(windows) if s <= we and e >= ws]
        if not matched:
            fp += 1
            continue
        for j in matched:
            hit_label[j] = True
        kind = labels[matched[0]].kind
        tp_kind[kind] = tp_kind.get(kind, 0) + 1
    per_kind: dict[str, dict] = {}
    for lab, hit in zip(labels, hit_label, strict=True):
        d = per_kind.setdefault(lab.kind, {"labels": 0, "detected": 0, "tp_events": 0})
        d["labels"] += 1
        d["detected"] += int(hit)
    for kind, n in tp_kind.items():
        per_kind.setdefault(kind, {"labels": 0, "detected": 0, "tp_events": 0})["tp_events"] = n
    return {"tp_events": sum(tp_kind.values()), "fp_events": fp, "labels": len(labels),
            "detected": sum(hit_label), "per_kind": per_kind}


def prf(tp: int, fp: int, detected: int, labels: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = detected / labels if labels else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4)}
