"""`make bench`: run every tests/benchmarks/bench_*.py, print a table, write bench.json and the
table of current figures in docs/scaling.md (tests/benchmarks/report.py).

`make bench BENCH_ARGS="ingest rules"` runs only the modules whose names contain those words; the
others keep their figures (and their run's date and load) from the previous bench.json.
"""

import importlib
import json
import os
import platform
import sys
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from . import report
from .harness import REPO


def main(argv: list[str]) -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anomalyhub.settings")
    import django

    django.setup()
    here = Path(__file__).parent
    modules = sorted(p.stem for p in here.glob("bench_*.py"))
    if argv:
        modules = [m for m in modules if any(a in m for a in argv)]
    results, runs, failed = {}, {}, []
    for name in modules:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        # The machine is shared: the load average beside each module's figures says how busy it was.
        run = {"date": datetime.now(UTC).isoformat(), "load_average_start": round(os.getloadavg()[0], 1)}
        try:
            rows = importlib.import_module(f"tests.benchmarks.{name}").run()
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        results[name] = [r.to_dict() for r in rows]
        runs[name] = {**run, "load_average_end": round(os.getloadavg()[0], 1)}
        for r in rows:
            base = f"{r.baseline_value:,.1f}" if r.baseline_value is not None else "-"
            ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
            print(f"  {r.name:<52} {r.value:>14,.2f} {r.unit:<10} baseline {r.baseline_name or '-'}: "
                  f"{base:>14} ratio {ratio:>7}  {r.target}", flush=True)
        print(f"   ({time.perf_counter() - t0:.1f}s)", flush=True)
    out = {"date": datetime.now(UTC).isoformat(), "machine": platform.platform(),
           "cpus": os.cpu_count(), "results": results, "runs": runs, "failed": failed}
    path = REPO / "bench.json"
    previous = json.loads(path.read_text()) if path.exists() and argv else {}
    for key in ("results", "runs"):
        if previous.get(key):
            out[key] = {**previous[key], **out[key]}
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")
    report.write(out)
    print(f"wrote the table of current figures in {report.DOC}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
