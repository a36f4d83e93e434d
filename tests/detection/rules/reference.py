"""A deliberately naive, row-at-a-time model of the engine's semantics, used as a test oracle.

It reads seed 002 literally: per key, rows in arrival order; late rows dropped when the rule
has aggregates; an agg_column row compares with the latest window that ended at or before it;
an agg_const window is evaluated when the key's first row at or past its end arrives, if the
key has rows in it. Aggregates are computed here from plain Python lists.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from detection.rules.alignment import first_window_end
from detection.rules.evaluate import values, where_true
from detection.rules.nodes import Col, render
from detection.rules.plan import aggregate_inputs


def reference_outputs(plan, rows):
    """rows: list of dicts with time, key (or None), msg_id and value columns.
    Returns [(time, key, metric_index, msg_id, observed)]."""
    history = defaultdict(list)  # key -> [(time, {arg text: value})]
    last_time, memory = {}, defaultdict(dict)
    origin, out = None, []
    for row in rows:
        key, t = row["key"], row["time"]
        if plan.has_window and key in last_time and t < last_time[key]:
            continue
        if plan.has_window and origin is None:
            origin = first_window_end(t, plan.precision, plan.step, plan.round_time)
        cols = {c: np.array([row[c]], dtype=float) for c in plan.columns}
        derived = {}

        def leaf(node, cols=cols, derived=derived):
            return cols[node.name] if isinstance(node, Col) else derived[node.uid]

        for call in plan.prevs:
            current = float(values(call.args[0], leaf, 1)[0])
            derived[call.uid] = np.array([memory[key].get(call.uid, math.nan)])
            memory[key][call.uid] = current
        produced = []
        for m in plan.metrics:
            if m.kind == "row" and _holds(m.tree, leaf):
                produced.append((t, m.index, {**{c: row[c] for c in m.columns},
                                             **{render(p): derived[p.uid][0] for p in m.prevs}}))
        if plan.has_window:
            inputs = {name: float(values(tree, leaf, 1)[0]) for name, tree in plan.agg_inputs}
            step, size = plan.step, plan.window_size
            k_row = (t - origin) // step
            for m in plan.metrics:
                if m.kind == "agg_column" and k_row >= 0:
                    end = origin + k_row * step
                    aggs = _aggregates(m, history[key], end - size, end)
                    wleaf = _window_leaf(cols, derived, aggs)
                    if _holds(m.tree, wleaf):
                        produced.append((t, m.index, {**{c: row[c] for c in m.row_columns},
                                                      **{render(p): derived[p.uid][0] for p in m.prevs},
                                                      **{render(a): aggs[a.uid] for a in m.aggregates}}))
            k_old = (last_time[key] - origin) // step if key in last_time else -1
            for k in range(max(k_old, -1) + 1, k_row + 1):
                end = origin + k * step
                if not any(end - size <= ht < end for ht, _ in history[key]):
                    continue
                for m in plan.metrics:
                    if m.kind == "agg_const":
                        aggs = _aggregates(m, history[key], end - size, end)
                        if _holds(m.tree, _window_leaf({}, {}, aggs)):
                            produced.append((end, m.index, {render(a): aggs[a.uid] for a in m.aggregates}))
            history[key].append((t, inputs))
        last_time[key] = max(t, last_time.get(key, t))
        for time, index, observed in sorted(produced, key=lambda p: (p[0], p[1])):
            out.append((time, key, index, row["msg_id"], observed))
    return out


def _holds(tree, leaf) -> bool:
    """A metric's truth on the single row (or window) `leaf` describes."""
    return len(where_true(tree, leaf, 1)) == 1


def _window_leaf(cols, derived, aggs):
    def leaf(node):
        if isinstance(node, Col):
            return cols[node.name]
        if node.uid in aggs:
            return np.array([aggs[node.uid]])
        return derived[node.uid]
    return leaf


def _aggregates(metric, history, start, end):
    rows = [inputs for t, inputs in history if start <= t < end]
    return {call.uid: _aggregate(call, rows) for call in metric.aggregates}


def _aggregate(call, rows):
    names = [render(a) for a in aggregate_inputs(call)]
    xs = [r[names[0]] for r in rows]
    if call.name == "first":
        return xs[0] if xs else math.nan
    if call.name == "last":
        return xs[-1] if xs else math.nan
    if call.name == "wavg":
        pairs = [(r[names[0]], r[names[1]]) for r in rows
                 if not math.isnan(r[names[0]]) and not math.isnan(r[names[1]])]
        weight = sum(w for _, w in pairs)
        return sum(x * w for x, w in pairs) / weight if pairs and weight else math.nan
    xs = [x for x in xs if not math.isnan(x)]
    if call.name == "count":
        return float(len(xs))
    if not xs:
        return math.nan
    if call.name == "sum":
        return math.fsum(xs)
    if call.name == "avg":
        return math.fsum(xs) / len(xs)
    if call.name == "min":
        return min(xs)
    if call.name == "max":
        return max(xs)
    if call.name in ("var", "std"):
        if len(xs) < 2:
            return math.nan
        mean = math.fsum(xs) / len(xs)
        var = math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)
        return math.sqrt(var) if call.name == "std" else var
    p = 50.0 if call.name == "med" else float(render(call.args[1]))
    how = call.args[2].value if len(call.args) == 3 else "linear"
    return percentile(xs, p, how)


def percentile(xs, p, how="linear"):
    """DolphinDB's percentile on a plain list, straight from its documentation."""
    s = sorted(xs)
    pos = p / 100 * (len(s) - 1)
    i = math.floor(pos)
    frac = pos - i
    lo, hi = s[i], s[min(i + 1, len(s) - 1)]
    if frac == 0 or how == "lower":
        return lo
    return {"linear": lo + (hi - lo) * frac, "higher": hi, "nearest": hi if frac > 0.5 else lo,
            "midpoint": (lo + hi) / 2}[how]
