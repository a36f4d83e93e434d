"""`manage.py rules_eval`: run anomaly metrics over a CSV file and print the outputs as CSV."""

from __future__ import annotations

import csv
import sys

import numpy as np
from django.core.management.base import BaseCommand, CommandError

from anomalyhub.lib.csv_cells import safe_cell
from detection.rules import RuleEngine, RuleSyntaxError, compile_rule
from detection.rules.timefmt import parse_times


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered not in ("true", "false", "1", "0", "yes", "no"):
        raise CommandError(f"expected true or false, got {text!r}")
    return lowered in ("true", "1", "yes")


class Command(BaseCommand):
    help = ("Evaluate DolphinDB-style anomaly metrics over a CSV file; prints "
            "time,[key,]anomalyType,anomalyString as CSV.")

    def add_arguments(self, parser):
        parser.add_argument("--metrics", required=True, help='e.g. "temp > 65; temp > percentile(temp, 75)"')
        parser.add_argument("--input", required=True, help="CSV file with a header row ('-' for stdin)")
        parser.add_argument("--time-column", default="time")
        parser.add_argument("--key-column", default=None)
        parser.add_argument("--window-size", type=int, default=None, help="in units of the time precision")
        parser.add_argument("--step", type=int, default=None, help="in units of the time precision")
        parser.add_argument("--round-time", type=_bool, default=True)
        parser.add_argument("--precision", default=None, help="s, ms, ns, min or date; default: from the times")

    def handle(self, *args, **opts):
        header, rows = self._read(opts["input"])
        time_column, key_column = opts["time_column"], opts["key_column"]
        for column in filter(None, (time_column, key_column)):
            if column not in header:
                raise CommandError(f"the CSV has no column '{column}' (columns: {', '.join(header)})")
        try:
            times, fmt = parse_times([r[time_column] for r in rows], opts["precision"])
            plan = compile_rule(opts["metrics"], header, time_column=time_column, key_column=key_column,
                                window_size=opts["window_size"], step=opts["step"],
                                round_time=opts["round_time"], precision=fmt.precision)
        except RuleSyntaxError as exc:
            raise CommandError(f"bad metrics: {exc}") from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        batch = {time_column: times, **{c: self._numbers(rows, c) for c in plan.columns}}
        if key_column:
            batch[key_column] = np.array([r[key_column] for r in rows], dtype=object)
        out = csv.writer(self.stdout, lineterminator="\n")
        out.writerow(["time", *([key_column] if key_column else []), "anomalyType", "anomalyString"])
        for o in RuleEngine(plan).process(batch):
            out.writerow([fmt.format(o.time), *([safe_cell(o.key)] if key_column else []), o.metric_index,
                          safe_cell(o.metric_text)])

    def _read(self, path: str) -> tuple[list[str], list[dict]]:
        try:
            handle = sys.stdin if path == "-" else open(path, newline="", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror}") from exc
        with handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            return list(reader.fieldnames or []), rows

    @staticmethod
    def _numbers(rows: list[dict], column: str) -> np.ndarray:
        values = np.empty(len(rows))
        for i, row in enumerate(rows):
            text = (row.get(column) or "").strip()
            try:
                values[i] = float(text) if text else np.nan  # an empty cell is NULL
            except ValueError:
                raise CommandError(f"row {i + 1}: column '{column}' is not a number: {text!r}") from None
        return values
