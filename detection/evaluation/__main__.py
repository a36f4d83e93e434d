"""`make eval`: precision / recall / F1 of every detector on real bars with injected anomalies.

Protocol per series: the first `--train-fraction` of the rows (clean, nothing injected) trains
the detector as production would; then the whole series, anomalies included, is scored in one
causal streaming pass from the start, and flagged points after the training part are matched
against the labels (metrics.py). Prints a table and writes a JSON report.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from detection.detectors import get_detector_class

from .data import load_all
from .inject import KINDS, inject
from .metrics import match, prf
from .nab import ANCHORS, evaluate_nab, find_root

DETECTOR_NAMES = ("robust_zscore", "isolation_forest", "lstm_forecast", "context_ose", "ensemble")


def evaluate(detectors: list[str], train_fraction: float, seed: int, quick: bool) -> dict:
    series = load_all(quick=quick)
    totals = {d: {"tp": 0, "fp": 0, "detected": 0, "labels": 0, "kinds": {}, "seconds": 0.0, "series": {}}
              for d in detectors}
    jobs = [(s, d) for s in series for d in detectors]
    injected = {}
    for k, s in enumerate(series):
        first = int(len(s.frame) * train_fraction)
        injected[s.name] = (first, *inject(s.frame, first + 50, seed=seed + k, calendar=s.calendar))
    for s, name in tqdm(jobs, desc="eval", unit="run", file=sys.stderr):
        first, frame, labels = injected[s.name]
        t0 = time.perf_counter()
        det = get_detector_class(name)(seed=seed, calendar=s.calendar)
        det.fit(frame.iloc[:first])
        det.reset_state()
        flags = det.score(frame).is_anomaly
        m = match(flags, labels, first)
        tot = totals[name]
        tot["seconds"] += time.perf_counter() - t0
        tot["tp"] += m["tp_events"]
        tot["fp"] += m["fp_events"]
        tot["detected"] += m["detected"]
        tot["labels"] += m["labels"]
        tot["series"][s.name] = {**prf(m["tp_events"], m["fp_events"], m["detected"], m["labels"]),
                                 "fp_events": m["fp_events"]}
        for kind, d in m["per_kind"].items():
            agg = tot["kinds"].setdefault(kind, {"labels": 0, "detected": 0, "tp_events": 0})
            for key in agg:
                agg[key] += d[key]
    report = {"train_fraction": train_fraction, "seed": seed, "series": [s.name for s in series],
              "detectors": {}}
    for name, tot in totals.items():
        kinds = {k: prf(v["tp_events"], tot["fp"], v["detected"], v["labels"])
                 for k, v in sorted(tot["kinds"].items())}
        report["detectors"][name] = {**prf(tot["tp"], tot["fp"], tot["detected"], tot["labels"]),
                                     "tp_events": tot["tp"], "fp_events": tot["fp"],
                                     "labels": tot["labels"], "seconds": round(tot["seconds"], 1),
                                     "per_kind": kinds, "per_series": tot["series"]}
    return report


def print_table(report: dict) -> None:
    kinds = [k for k in KINDS]
    head = f"{'detector':<18}{'P':>7}{'R':>7}{'F1':>7}{'FP':>5}{'sec':>7}  " + "".join(f"{k[:12]:>14}" for k in kinds)
    print(head)
    print("-" * len(head))
    for name, r in report["detectors"].items():
        cells = "".join(
            f"{r['per_kind'][k]['recall']:>6.2f}/{r['per_kind'][k]['f1']:<7.2f}" if k in r["per_kind"] else f"{'-':>14}"
            for k in kinds)
        print(f"{name:<18}{r['precision']:>7.3f}{r['recall']:>7.3f}{r['f1']:>7.3f}{r['fp_events']:>5}"
              f"{r['seconds']:>7.1f}  {cells}")
    print("(per kind: recall/F1; F1 counts all false positives against each kind)")


def print_nab(results: dict) -> None:
    """Per profile and per category, next to the published detectors."""
    profiles = ("standard", "low FP", "low FN")
    print(f"\nNAB {'detector':<32}" + "".join(f"{p:>10}" for p in profiles))
    for name, report in results.items():
        print(f"    {name:<32}" + "".join(f"{report[p]['score']:>10.1f}" for p in profiles))
    for name, scores in ANCHORS.items():
        print(f"    {name + ' (published)':<32}" + "".join(f"{v:>10.1f}" for v in scores))
    for name, report in results.items():
        print(f"\n{name} per category at the corpus threshold:")
        for cat in report["standard"]["categories"]:
            print(f"    {cat:<32}" + "".join(f"{report[p]['categories'][cat]:>10.1f}" for p in profiles))


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m detection.evaluation", description=__doc__)
    ap.add_argument("--detectors", nargs="*", default=list(DETECTOR_NAMES))
    ap.add_argument("--train-fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="three series only")
    ap.add_argument("--output", default="eval_report.json")
    ap.add_argument("--nab-detectors", nargs="*", default=["ensemble"],
                    help="detectors scored on NAB when the corpus is present (none: skip NAB)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    report = evaluate(args.detectors, args.train_fraction, args.seed, args.quick)
    print_table(report)
    root = find_root()
    if root is None:
        print("NAB: skipped (no corpus at $NAB_ROOT or ../shared/data/nab)")
    elif args.nab_detectors:
        report["nab"] = {name: evaluate_nab(root, name, args.seed,
                                            progress=lambda f, n=name: tqdm(f, desc=f"NAB {n}", file=sys.stderr))
                         for name in args.nab_detectors}
        print_nab(report["nab"])
    report["seconds"] = round(time.perf_counter() - t0, 1)
    Path(args.output).write_text(json.dumps(report, indent=2))
    print(f"wrote {args.output} ({report['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
