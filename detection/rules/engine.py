"""RuleEngine: DolphinDB's anomaly detection engine over columnar numpy batches.

Streaming and batch are the same call: `process` takes any slice of the stream and returns
exactly the outputs an engine fed one row at a time would have produced for it. Rows are
handled per key in arrival order, vectorised across keys (argsort by key, then numpy over
the whole batch), never with a Python loop per row. Rules with only row metrics and no prev()
keep no per-key state, so they skip the sort and run on the batch as it arrived.

Out-of-order input: as in DolphinDB, rules with aggregates need each key's times to be
non-decreasing; a row older than an earlier row of its key is dropped and counted
(stats()["numLateRows"]). Rules without aggregates accept any order (prev() is the previous
row of the key in arrival order).
"""

from __future__ import annotations

import time

import numpy as np

from .aggregates import Windows, compute
from .alignment import alignment_size, first_window_end
from .evaluate import values, where_true
from .grouping import SortedMerge, key_order, late_rows, segment_bounds
from .nodes import Col, render
from .output import Chunk, Output, assemble
from .plan import RulePlan
from .state import EngineState
from .windowing import Grid, StepRuns, closed_window_spans, closed_windows, previous_windows

_NUMPY_UNITS = {"s": "s", "ms": "ms", "ns": "ns", "min": "m", "date": "D"}


class WindowLimitExceeded(ValueError):
    """One process() call would compute more windows than the engine's max_windows. Raised after
    counting them arithmetically, before any is computed; the engine's state is not advanced."""

    def __init__(self, windows: int, limit: int):
        self.windows, self.limit = windows, limit
        super().__init__(f"this batch would close {windows:,} windows, over the limit of {limit:,} per call; use "
                         "a larger step or a smaller windowSize (fewer windows per row), or fewer rows per call")


class RuleEngine:
    """Evaluates a compiled RulePlan over a stream of batches; see module docstring."""

    def __init__(self, plan: RulePlan, *, snapshot_interval: int | None = None, name: str = "rules",
                 max_windows: int | None = None):
        self.plan = plan
        # Windows one process() call may compute (agg_const metrics); None = no bound.
        self.max_windows = max_windows
        self.windows_computed = 0  # by this engine object, for callers that budget several calls
        self.name = name
        self.snapshot_interval = snapshot_interval
        self._state = EngineState.empty([p.uid for p in plan.prevs], [n for n, _ in plan.agg_inputs])
        self._last_error = ""
        self._failed = False
        self._by_kind = {k: [m for m in plan.metrics if m.kind == k] for k in ("row", "agg_column", "agg_const")}
        self._columns = plan.columns
        # Without windows or prev() no per-key state takes part: rows are evaluated in arrival
        # order and keys are encoded only for the rows that fire (all are still registered).
        self._per_key = plan.has_window or bool(plan.prevs)
        self._labels = {call.uid: render(call) for call in (*plan.aggregates, *plan.prevs)}

    # -- public API ---------------------------------------------------------------------
    def process(self, batch: dict[str, np.ndarray], msg_ids: np.ndarray | None = None) -> list[Output]:
        """Feed one batch (columns as arrays: the time column as int64 in the plan's precision
        or datetime64, value columns as floats, the key column as str/int values) and return
        its outputs. `msg_ids` (strictly increasing int64) default to continuing the engine's
        count; rows whose id is not above the last processed id are skipped as replays."""
        try:
            return self._process(batch, msg_ids)
        except Exception as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            self._failed = not isinstance(exc, ValueError | KeyError)
            raise

    def snapshot(self) -> bytes:
        """All state as msgpack bytes; restore with RuleEngine.restore(plan, data)."""
        c = self._state.counters
        c.snapshot_time_ms = int(time.time() * 1000)
        data = self._state.to_bytes(self.plan.fingerprint, c.snapshot_time_ms)
        c.snapshot_msg_id = c.last_msg_id
        return data

    @classmethod
    def restore(cls, plan: RulePlan, data: bytes, **kwargs) -> RuleEngine:
        """An engine continuing from a snapshot; feed it the messages after snapshot_msg_id.
        Raises ValueError when the snapshot belongs to another plan."""
        engine = cls(plan, **kwargs)
        engine._state = EngineState.from_bytes(data, plan.fingerprint)
        return engine

    @property
    def snapshot_msg_id(self) -> int:
        """Id of the last message included in the latest snapshot taken or restored; -1 if none."""
        return self._state.counters.snapshot_msg_id

    @property
    def last_msg_id(self) -> int:
        return self._state.counters.last_msg_id

    def should_snapshot(self) -> bool:
        """True once `snapshot_interval` messages have been processed since the last snapshot."""
        c = self._state.counters
        return bool(self.snapshot_interval) and c.last_msg_id - c.snapshot_msg_id >= self.snapshot_interval

    def stats(self) -> dict:
        """Like DolphinDB's getStreamEngineStat().AnomalyDetectionEngine, plus our counters."""
        st, c, plan = self._state, self._state.counters, self.plan
        return {
            "name": self.name, "status": "ERROR" if self._failed else "OK", "lastErrMsg": self._last_error,
            "numGroups": len(st.keys), "numRows": c.num_rows, "numMetrics": len(plan.metrics),
            "metrics": ", ".join(m.text for m in plan.metrics),
            "snapshotInterval": self.snapshot_interval, "snapshotMsgId": c.snapshot_msg_id,
            "snapshotTimestamp": c.snapshot_time_ms,
            # Buffers are pruned after every batch, so there is no garbage threshold to report.
            "garbageSize": None, "memoryUsed": st.memory_bytes(),
            "numLateRows": c.num_late, "numReplayedRows": c.num_replayed, "numOutputs": c.num_outputs,
            "lastMsgId": c.last_msg_id, "windowSize": plan.window_size, "step": plan.step,
            "alignmentSize": alignment_size(plan.precision, plan.step, plan.round_time) if plan.step else None,
            "windowOrigin": st.origin,
        }

    # -- one batch ----------------------------------------------------------------------
    def _process(self, batch, msg_ids) -> list[Output]:
        plan, st = self.plan, self._state
        times = self._times(batch)
        n = len(times)
        cols = {c: _column(batch, c, n) for c in self._columns}
        keys = _key_column(batch, plan.key_column, n)
        if msg_ids is None:
            ids = st.counters.last_msg_id + 1  # generated ids: row i has id ids + i, no array needed
            last_id = ids + n - 1
        else:
            ids = _msg_ids(msg_ids, n)
            fresh = ids > st.counters.last_msg_id
            if not fresh.all():
                st.counters.num_replayed += int((~fresh).sum())
                times, ids = times[fresh], ids[fresh]
                cols = {c: v[fresh] for c, v in cols.items()}
                keys = keys[fresh] if keys is not None else None
            last_id = int(ids[-1]) if len(ids) else st.counters.last_msg_id
        codes = st.keys.encode(keys, len(times)) if self._per_key else None
        st.grow()
        accepted = None
        if plan.has_window:
            late = late_rows(codes, times, st.last_time)
            if late is not None:
                st.counters.num_late += int(late.sum())
                accepted = np.flatnonzero(~late)
        outputs = self._evaluate(times, codes, keys, cols, ids, accepted)
        # Counted only now: a batch that fails (e.g. mixed key types) is not taken as processed.
        st.counters.num_rows += len(times) if accepted is None else len(accepted)
        st.counters.last_msg_id = last_id
        st.counters.num_outputs += len(outputs)
        return outputs

    def _evaluate(self, times, codes, keys, cols, ids, accepted) -> list[Output]:
        plan, st = self.plan, self._state
        if codes is None:
            # Arrival order, one output per row and metric: only several metrics need sorting.
            return assemble(self._stateless(times, keys, cols), st.keys.values, ids, None, rows_ascending=True)
        return assemble(self._stateful(times, codes, cols, accepted), st.keys.values, ids, plan.window_size)

    def _stateless(self, times, keys, cols) -> list[Chunk]:
        """Row metrics without prev(): evaluated on the whole batch in arrival order. Keys are
        encoded only for the rows that fire, though every key is registered (numGroups)."""
        n, metrics = len(times), self._by_kind["row"]
        leaf = _leaf(cols, {})
        hits = [where_true(m.tree, leaf, n) for m in metrics]
        fired = hits[0] if len(hits) == 1 else np.unique(np.concatenate(hits))
        codes = self._state.keys.encode(keys, n, fired)
        self._state.grow()  # per-key arrays for keys first seen here, as the general path has
        chunks = []
        for m, idx in zip(metrics, hits, strict=True):
            key_codes = codes if idx is fired else codes[np.searchsorted(fired, idx)]
            chunks.append(self._row_chunk(m, idx, None, times, key_codes, cols, {}))
        return chunks

    def _stateful(self, times, codes, cols, accepted) -> list[Chunk]:
        """Rows sorted by key (then arrival), so prev() and windows are per-key shifts and searches."""
        sub = codes if accepted is None else codes[accepted]
        by_key = key_order(sub)
        order = by_key if accepted is None else accepted[by_key]
        # take: ~2x faster than fancy indexing for these 1-D gathers.
        times, cols = times.take(order), {c: v.take(order) for c, v in cols.items()}
        n_keys = len(self._state.keys)
        if n_keys <= len(sub):  # sorted codes by counting: cheaper than a gather in random order
            codes = np.repeat(np.arange(n_keys, dtype=np.int64), np.bincount(sub, minlength=n_keys))
        else:
            codes = codes.take(order)
        n = len(times)
        if n == 0:
            return []
        derived: dict[str, np.ndarray] = {}
        leaf = _leaf(cols, derived)
        self._prevs(codes, leaf, derived)
        chunks = []
        for m in self._by_kind["row"]:
            idx = where_true(m.tree, leaf, n)
            chunks.append(self._row_chunk(m, idx, order, times, codes[idx], cols, derived))
        if self.plan.has_window:
            chunks += self._windows(order, times, codes, cols, derived, leaf)
        return chunks

    def _prevs(self, codes, leaf, derived) -> None:
        """prev(x) per key: shift x by one row within each key, seeded from the previous batch."""
        if not self.plan.prevs:
            return
        starts, ends = segment_bounds(codes)
        for call in self.plan.prevs:  # inner prev() calls come first
            current = values(call.args[0], leaf, len(codes))
            memory = self._state.prev[call.uid]
            shifted = np.empty(len(codes))
            shifted[1:] = current[:-1]
            shifted[starts] = memory[codes[starts]]
            derived[call.uid] = shifted
            memory[codes[ends]] = current[ends]

    def _row_chunk(self, metric, idx, order, times, key_codes, cols, derived) -> Chunk:
        """Outputs of a row metric firing at rows `idx` (of keys `key_codes`)."""
        observed = {c: cols[c][idx] for c in metric.columns}
        observed.update({self._labels[p.uid]: derived[p.uid][idx] for p in metric.prevs})
        return Chunk(metric.index, metric.text, idx if order is None else order[idx], times[idx], key_codes,
                     observed)

    def _windows(self, order, times, codes, cols, derived, leaf) -> list[Chunk]:
        plan, st = self.plan, self._state
        if st.origin is None:  # the first row in arrival order aligns every key
            first = times[np.argmin(order)]
            st.origin = first_window_end(int(first), plan.precision, plan.step, plan.round_time)
        grid = Grid(st.origin, plan.step, plan.window_size)
        # Buffered rows and this batch's rows, sorted by (key, time).
        inputs = {name: values(tree, leaf, len(times)) for name, tree in plan.agg_inputs}
        merge = SortedMerge(st.buf_code, codes)
        buf_code, buf_time = merge(st.buf_code, codes), merge(st.buf_time, times)
        buf_cols = {name: merge(st.buf_cols[name], inputs[name]) for name in inputs}
        last_time = st.last_time.copy()
        _, ends = segment_bounds(codes)
        last_time[codes[ends]] = times[ends]
        buffer = StepRuns(grid, buf_code, buf_time)
        chunks = self._agg_column(grid, order, times, codes, cols, derived, buffer, buf_cols)
        chunks += self._agg_const(grid, order, buffer, buf_cols, last_time, merge)
        keep = (buf_time >= grid.retain_from(last_time).take(buf_code)).nonzero()[0]  # then take(), not masks
        st.buf_code, st.buf_time = buf_code.take(keep), buf_time.take(keep)
        st.buf_cols = {name: v.take(keep) for name, v in buf_cols.items()}
        st.last_time = last_time
        return chunks

    def _aggregates(self, metrics, grid, wc, wk, buffer: StepRuns, buf_cols) -> tuple[dict, np.ndarray, np.ndarray]:
        """Aggregate values of `metrics` for windows (wc, wk), keyed by call uid; window ends; and
        where each window stops in the buffer (the key's first row at or past the end)."""
        ends = grid.end(wk)
        # Windows are [end k - size, end k), both on the grid: one search for both bounds.
        bounds = buffer.first_row(np.concatenate((wc, wc)), np.concatenate((wk - grid.size // grid.step, wk)))
        lo, hi = bounds[:len(wc)], bounds[len(wc):]
        windows = Windows(lo, hi)
        by_text: dict[str, np.ndarray] = {}
        out = {}
        for call in (c for m in metrics for c in m.aggregates):
            label = self._labels[call.uid]
            if label not in by_text:
                by_text[label] = compute(call, windows, buf_cols)
            out[call.uid] = by_text[label]
        return out, ends, hi

    def _agg_column(self, grid, order, times, codes, cols, derived, buffer, buf_cols) -> list[Chunk]:
        metrics = self._by_kind["agg_column"]
        if not metrics:
            return []
        rows, window_of, wc, wk = previous_windows(grid, codes, times)
        if not len(rows):
            return []
        per_window, ends, _ = self._aggregates(metrics, grid, wc, wk, buffer, buf_cols)
        sub_derived = {uid: v[rows] for uid, v in derived.items()}
        sub_derived.update({uid: v[window_of] for uid, v in per_window.items()})
        sub_cols = {c: cols[c][rows] for m in metrics for c in m.row_columns}
        leaf = _leaf(sub_cols, sub_derived)
        chunks = []
        for m in metrics:
            idx = where_true(m.tree, leaf, len(rows))
            sel = rows[idx]
            observed = {c: sub_cols[c][idx] for c in m.row_columns}
            observed.update({self._labels[call.uid]: sub_derived[call.uid][idx] for call in (*m.prevs, *m.aggregates)})
            chunks.append(Chunk(m.index, m.text, order[sel], times[sel], codes[sel], observed,
                                ends[window_of[idx]]))
        return chunks

    def _agg_const(self, grid, order, buffer, buf_cols, last_time, merge: SortedMerge) -> list[Chunk]:
        metrics = self._by_kind["agg_const"]
        if not metrics:
            return []
        spans = closed_window_spans(grid, buffer, grid.last_closed(self._state.last_time),
                                    grid.last_closed(last_time))
        windows = int(spans[2].sum())
        if self.max_windows is not None and windows > self.max_windows:
            raise WindowLimitExceeded(windows, self.max_windows)
        self.windows_computed += windows
        wc, wk = closed_windows(*spans)
        if not len(wc):
            return []
        per_window, ends, closing = self._aggregates(metrics, grid, wc, wk, buffer, buf_cols)
        leaf = _leaf({}, per_window)
        chunks = []
        for m in metrics:
            idx = where_true(m.tree, leaf, len(wc))
            # The row that closed the window: the key's first row at or past the window end. It
            # is in this batch, as the window closed now (the key had no row that late before).
            trigger = merge.new_rows(closing[idx])
            observed = {self._labels[call.uid]: per_window[call.uid][idx] for call in m.aggregates}
            chunks.append(Chunk(m.index, m.text, order[trigger], ends[idx], wc[idx], observed, ends[idx]))
        return chunks

    def _times(self, batch) -> np.ndarray:
        column = self.plan.time_column
        if column not in batch:
            raise KeyError(f"batch has no time column '{column}'")
        t = np.asarray(batch[column])
        if t.dtype.kind == "M":  # datetime64
            return t.astype(f"datetime64[{_NUMPY_UNITS[self.plan.precision]}]").view(np.int64)
        if t.dtype.kind not in "iu":
            raise ValueError(f"time column '{column}' must hold integers or datetime64, not {t.dtype}")
        return t.astype(np.int64, copy=False).reshape(-1)


def _leaf(cols: dict, derived: dict):
    def leaf(node):
        return cols[node.name] if isinstance(node, Col) else derived[node.uid]
    return leaf


def _msg_ids(msg_ids, n: int) -> np.ndarray:
    ids = np.asarray(msg_ids, dtype=np.int64).reshape(-1)
    if len(ids) != n:
        raise ValueError(f"{len(ids)} msg ids for {n} rows")
    if n > 1 and not bool(np.all(ids[1:] > ids[:-1])):
        raise ValueError("msg ids must be strictly increasing")
    return ids


def _column(batch, name: str, n: int) -> np.ndarray:
    if name not in batch:
        raise KeyError(f"batch has no column '{name}'")
    values = np.asarray(batch[name], dtype=np.float64).reshape(-1)
    if len(values) != n:
        raise ValueError(f"column '{name}' has {len(values)} values for {n} rows")
    return values


def _key_column(batch, name: str | None, n: int):
    if name is None:
        return None
    if name not in batch:
        raise KeyError(f"batch has no key column '{name}'")
    keys = np.asarray(batch[name]).reshape(-1)
    if len(keys) != n:
        raise ValueError(f"key column '{name}' has {len(keys)} values for {n} rows")
    return keys

