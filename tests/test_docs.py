"""Generated docs are what their generators write: the table in docs/scaling.md is bench.json's
(tests/benchmarks/report.py), and docs/load-report.md is one `make load` run's whole output, with
nothing appended by hand."""

import json

from tests.benchmarks import report
from tests.benchmarks.harness import REPO
from tests.load.__main__ import GENERATED, HEADINGS


def test_the_scaling_table_is_bench_json():
    bench = json.loads((REPO / "bench.json").read_text())
    doc = (REPO / "docs" / "scaling.md").read_text()
    assert report.current_block(doc) == report.render(bench), (
        "docs/scaling.md's table differs from bench.json: run `python -m tests.benchmarks.report`")


def test_the_table_has_a_row_per_figure_and_its_run():
    bench = {"machine": "m", "cpus": 2, "failed": ["bench_late"],
             "runs": {"bench_x": {"date": "2026-01-02T03:04:05+00:00", "load_average_start": 1.5,
                                  "load_average_end": 2.0}},
             "results": {"bench_x": [{"name": "a | b", "value": 1234567.8, "unit": "rows/s", "baseline_name": "raw",
                                      "baseline_value": 2e6, "ratio": 0.617, "target": ">= 1", "extra": {"met": False}},
                                     {"name": "c", "value": 0.01234, "unit": "ms", "baseline_name": "",
                                      "baseline_value": None, "ratio": None, "target": "", "extra": {}}]}}
    block = report.render(bench)
    assert "| **x** (2026-01-02 03:04 UTC, load average 1.5 → 2.0) |" in block
    assert "| a \\| b | 1,234,568 rows/s | raw: 2,000,000 | 0.617× | >= 1 | **no** |" in block
    assert "| c | 0.0123 ms | — | — | — | — |" in block
    assert "Failed in the last run (figures above are older): bench_late." in block
    doc = f"before\n{report.BEGIN}\nstale\n{report.END}\nafter\n"
    assert report.replace_block(doc, block) == f"before\n{block}\nafter\n"


def test_the_load_report_is_one_runs_whole_output():
    text = (REPO / "docs" / "load-report.md").read_text()
    assert GENERATED in text, "docs/load-report.md was not written by `make load`"
    headings = [line for line in text.splitlines() if line.startswith("#")]
    assert headings == HEADINGS, "docs/load-report.md has sections `make load` does not write (a run diary?)"
