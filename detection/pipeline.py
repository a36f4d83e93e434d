"""The streaming detection pipeline: new points of a series -> its rules -> anomalies, exactly once.

Per series, a cursor row (locked FOR UPDATE) serialises workers, so a series' engine state is
never interleaved, while different series run in parallel. Points are consumed in time order in
chunks of SNAPSHOT_INTERVAL messages; each chunk commits its anomalies, every rule's engine
snapshot (with the last message id it includes) and the cursor in ONE transaction. A worker that
dies mid-chunk loses only that uncommitted chunk, and the next run resumes from the snapshot:
no gap, no duplicate. A pass (run_many) takes many series of one organization at once, one
transaction per chunk for all of them, with a fixed number of statements whatever their count.
On PostgreSQL a chunk is four round trips: BEGIN; the cursor locks and the reads of points, rules
and states (prepared statements, one query string); the anomalies, states and cursors written
(one query string); COMMIT. A rule's engine stays in the worker process between chunks, and is
used again only while the stored state is still exactly the snapshot it saved.

Message ids: ts_us * 1024 + rank among equal timestamps. A chunk never splits a timestamp, and
the next read starts after the last one, so ids only grow.

Late points: the cursor is a time, but batches commit in any order (concurrent clients, retries,
backfills), so a batch can commit points at or before the time already streamed. Every batch's
transaction queues its span for detection (watchlists.pending), which orders by commit what the cursor
cannot; each chunk takes (deletes) the spans of its series right after locking their cursors,
before it reads a point. A span starting at or before the cursor rewinds the series (_rewind):
the cursor goes back far enough before the late points that every window and prev() they touch
is rebuilt from stored points, the rules' engines start fresh from there, detectors re-warm, and
the stream replays forward. Replayed outputs before the late points are dropped (the first
stream judged those with the full history); the rest are inserted as usual, the unique anomaly key
absorbing the ones already stored. So every stored point is judged, with the state it would have
had, and every anomaly is stored once. A span taken whose points this chunk cannot see yet (its
transaction committed between the two statements) only makes a later chunk replay them again.
"""

from __future__ import annotations

import json
import logging
import math
import re
import weakref
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils import timezone

from watchlists import pending
from watchlists.models import PendingWork, Series, WatchlistItem
from watchlists.store import reader
from watchlists.store.schema import RAW_TABLES
from watchlists.store.timeconv import from_us, to_us
from watchlists.store.writer import VALUE_COLUMNS

from . import metrics
from .detectors import ArtifactError
from .limits import cap_anomalies
from .models import Anomaly, DetectionCursor, Detector, DetectorStatus, Rule, RuleState
from .rules import RuleEngine
from .rules.alignment import alignment_size
from .services import detectors as detector_services
from .services.rules import align, plan_for, series_batch
from .signals import anomalies_detected

logger = logging.getLogger(__name__)
RANK_BITS = 1024
FAR_FUTURE_US = 4_102_444_800 * 1_000_000  # 2100-01-01


def snapshot_interval() -> int:
    return getattr(settings, "DETECTION_SNAPSHOT_INTERVAL", 10_000)


def message_ids(ts_us: np.ndarray) -> np.ndarray:
    repeats = ts_us[1:] == ts_us[:-1]
    if not repeats.any():  # the usual case: every timestamp distinct, every rank 0
        return ts_us * RANK_BITS
    n = len(ts_us)
    starts = np.flatnonzero(np.r_[True, ~repeats])
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    return ts_us * RANK_BITS + np.minimum(rank, RANK_BITS - 1)


def stale_series() -> list[tuple[int, int]]:
    """(series id, organization id) of series with points newer than their cursor and a rule or a
    ready detector, and of every series with stored spans not taken yet (late points, or a run lost).

    PostgreSQL: one statement that compares each series' last point with its cursor first and
    looks for rules and detectors only for those behind (the ORM loop below loaded every series
    with a rule into Python: 3.5 s per sweep at 100,000 series; this, ~120 ms). JIT is off for it:
    compiling the plan took longer (~300 ms) than running it."""
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL jit = off")
            cursor.execute(_STALE)
            return [(series_id, organization_id) for series_id, organization_id in cursor.fetchall()]
    return _stale_series_orm()


def _stale_series_orm() -> list[tuple[int, int]]:
    with_rules = Series.objects.filter(Q(rules__enabled=True) | Q(watchlists__rules__enabled=True)
                                       | Q(detectors__enabled=True, detectors__status=DetectorStatus.READY),
                                       last_point_at__isnull=False).distinct()
    out = set(PendingWork.objects.filter(purpose=pending.DETECT).values_list("series_id", "organization_id").distinct())
    for series in with_rules.select_related("detection_cursor"):
        cursor = getattr(series, "detection_cursor", None)
        processed_us = (cursor.last_msg_id // RANK_BITS) if cursor else -1
        if to_us(series.last_point_at) > processed_us:
            out.add((series.pk, series.organization_id))
    return sorted(out)


def rules_for(series: Series):
    return (Rule.objects.filter(organization_id=series.organization_id, enabled=True)
            .filter(Q(series=series) | Q(watchlist__items__series=series)).distinct().order_by("pk"))


def whole_timestamps(ts_us: np.ndarray, limit: int) -> int:
    """How many of the rows read (limit + extra) to take: at most `limit`, unless that would split
    one timestamp between two chunks."""
    if len(ts_us) <= limit:
        return len(ts_us)
    return int(np.searchsorted(ts_us, ts_us[limit - 1], side="right"))


def run_series(series_id: int, organization_id: int) -> int:
    """Processes every new point of a series; returns anomalies written."""
    return run_many([series_id], organization_id)


def run_many(series_ids: list[int], organization_id: int) -> int:
    """Processes every new point of several series of one organization (a coalesced ingest burst);
    returns anomalies written. Safe to run concurrently and repeatedly: the cursor locks and the
    unique anomaly key absorb duplicates.

    One chunk covers all the series at once, in one transaction, with a fixed number of queries
    whatever their count (locks, points, rules, states, detectors, anomalies, cursors)."""
    return run_some(series_ids, organization_id)[0]


def run_some(series_ids: list[int], organization_id: int, max_chunks: int | None = None) -> tuple[int, list[int]]:
    """run_many, stopping after `max_chunks` chunks: (anomalies written, series with more to read)."""
    pending = sorted(set(series_ids))
    written = chunks = 0
    while pending and (max_chunks is None or chunks < max_chunks):
        with metrics.CHUNK_SECONDS.time():
            count, pending = _run_chunk(pending, organization_id)
        written += count
        chunks += 1
    return written, pending


@transaction.atomic
def _run_chunk(series_ids: list[int], organization_id: int) -> tuple[int, list[int]]:
    """One chunk of every series given; returns (anomalies written, the series with more to read)."""
    limit = snapshot_interval()
    # Read RANK_BITS extra rows so that a timestamp group at the limit can be completed.
    series_list, cursors, points, rules, states, late = _load(series_ids, organization_id, limit + RANK_BITS)
    rewound = _rewind(series_list, cursors, rules, states, late)
    active = [s for s in series_list if s.pk not in rewound and len(points.get(s.pk, _NO_POINTS)[0])]
    if not active and not rewound:
        return 0, []
    detectors: dict[int, list[Detector]] = {}
    with_detectors = [s for s in active if cursors[s.pk].has_detector]
    if with_detectors:
        for detector in Detector.objects.filter(series__in=with_detectors, enabled=True, status=DetectorStatus.READY):
            detectors.setdefault(detector.series_id, []).append(detector)
    # A rewound series saves its reset states and cursor now and streams again from the next chunk.
    anomalies, more = [], sorted(rewound)
    advanced = [cursors[pk] for pk in more]
    ran = {key: state for key, state in states.items() if key[1] in rewound}
    for series in active:
        ts_us, raw = points[series.pk]
        take = whole_timestamps(ts_us, limit)
        if take < len(ts_us):
            more.append(series.pk)
        ids = message_ids(ts_us[:take])
        columns = {k: v[:take] for k, v in raw.items()}
        found = []
        for rule in rules.get(series.pk, []):
            key = (rule.pk, series.pk)
            ran[key] = states[key]
            found += _run_rule(rule, series, states[key], columns, ids)
        for detector in detectors.get(series.pk, []):
            found += _run_detector(detector, series, ts_us[:take], columns)
        metrics.POINTS_DETECTED.inc(take)
        cursor = cursors[series.pk]
        if cursor.replay_from_us is not None:
            floor = from_us(cursor.replay_from_us)
            found = [a for a in found if a.ts >= floor]
        anomalies += found
        cursor.last_msg_id = int(ids[-1])
        advanced.append(cursor)
    anomalies = cap_anomalies(anomalies)
    created = _save(anomalies, ran, advanced)
    for anomaly in anomalies:
        metrics.ANOMALIES.labels(anomaly.source.split(":")[0]).inc()
    if anomalies:
        transaction.on_commit(lambda: _announce(organization_id, anomalies, created))
    return len(created), more


_NO_POINTS = (np.zeros(0, dtype=np.int64), {})


def _rewind(series_list: list[Series], cursors: dict, rules: dict, states: dict, late: dict) -> set[int]:
    """Rewinds every series whose spans taken start at or before its cursor (late points; see
    the module docstring) and returns their ids: the cursor moves back to _replay_start, the rules'
    states and the detectors' streaming states are reset (saved with the cursor by the caller),
    and outputs before the late points are to be dropped (replay_from_us). A series that no rule
    or detector watches has nothing to replay."""
    rewound = set()
    for series in series_list:
        lo, cursor = late.get(series.pk), cursors[series.pk]
        if lo is None or cursor.last_msg_id < 0 or lo > cursor.last_msg_id // RANK_BITS:
            continue
        series_rules = rules.get(series.pk, [])
        if not series_rules and not cursor.has_detector:
            continue
        start = _replay_start(series, series_rules, lo)
        cursor.last_msg_id = (start - 1) * RANK_BITS if start > 0 else -1
        cursor.replay_from_us = lo
        for rule in series_rules:
            _extend_grid(rule, series, start)
            state = states[(rule.pk, series.pk)]
            state.snapshot, state.snapshot_msg_id, state.last_error = None, -1, ""
        rewound.add(series.pk)
    if rewound:
        # stream_version None: the next chunk warms each model on the points before it, as for a new model.
        Detector.objects.filter(series_id__in=rewound).update(stream_version=None)
        metrics.REWINDS.inc(len(rewound))
        logger.info("late points: series %s replay from before them", sorted(rewound))
    return rewound


def _extend_grid(rule: Rule, series: Series, start_us: int) -> None:
    """Moves a window rule's origin back (by whole periods of its grid, so every window stays
    where it was) when a replay starts before its first window: the engine ignores rows before
    that, and late points older than the first point the rule saw need their windows too."""
    plan = _plan(rule, series)
    if not plan.has_window or rule.origin_time_ms is None:
        return
    earliest_ms = start_us // 1000 - plan.window_size
    if earliest_ms >= rule.origin_time_ms:
        return
    period = math.lcm(alignment_size(plan.precision, plan.step, plan.round_time), plan.step)
    rule.origin_time_ms -= -(-(rule.origin_time_ms - earliest_ms) // period) * period
    # Only ever earlier: another series of a watchlist rule may have moved it further back already.
    Rule.objects.filter(pk=rule.pk, origin_time_ms__gt=rule.origin_time_ms).update(origin_time_ms=rule.origin_time_ms)


def _replay_start(series: Series, rules: list[Rule], late_us: int) -> int:
    """Where a replay for points from `late_us` starts (µs): early enough that fresh engines rebuild
    everything the late points touch. A window containing them ends at most window_size after
    them, and a row compares with the latest window ended before it (up to a step earlier), so
    window_size + step before; and prev() needs as many stored points before them as it nests
    (at most the plan's prev() calls). Detectors warm on the points before the replay by
    themselves."""
    start, depth = late_us, 0
    for rule in rules:
        plan = _plan(rule, series)
        if plan.has_window:
            start = min(start, late_us - (plan.window_size + plan.step) * 1000)  # plans count ms
        depth = max(depth, len(plan.prevs))
    if depth:
        before = reader.read_raw_before(series.pk, series.kind, late_us, depth)
        if len(before["ts"]):
            start = min(start, int(before["ts"][0]))
    return start


def _announce(organization_id: int, anomalies: list[Anomaly], created: list[Anomaly]) -> None:
    """After commit: the live feed first, every created anomaly of the pass in one publish and
    one UPDATE; then, per series, anomalies_detected with the keys of every anomaly the chunk
    produced and the rows it created (with ids), for the other listeners (alerts)."""
    from .live import publish_created

    publish_created(created)
    by_series: dict[int, tuple[list, list]] = {}
    for anomaly in anomalies:
        by_series.setdefault(anomaly.series_id, ([], []))[0].append((anomaly.ts, anomaly.source, anomaly.metric_index))
    for anomaly in created:
        by_series[anomaly.series_id][1].append(anomaly)
    for series_id, (keys, rows) in by_series.items():
        anomalies_detected.send(sender=Anomaly, organization_id=organization_id, series_id=series_id,
                                anomaly_keys=keys, created=rows)


def _load(series_ids: list[int], organization_id: int, limit: int) -> tuple:
    """(series, {series id: cursor}, {series id: (times µs, engine columns)}, {series id: rules in
    rule order}, {(rule id, series id): engine state}) of the organization's series among the ids,
    their cursors locked FOR UPDATE in series order (no deadlock between workers), the points after
    each cursor (at most `limit` each), their enabled rules (own and watchlists') and the state of
    every (rule, series) pair (a fresh unsaved one for a new pair). A series without a cursor gets
    one first.

    PostgreSQL: ONE round trip once every cursor exists: the lock, the reads and the rules go as
    statements of one query string. Under READ COMMITTED each statement takes a new snapshot, so
    the reads after the lock see what the previous holder of the lock committed."""
    if connection.vendor != "postgresql":
        return _load_orm(series_ids, organization_id, limit)
    series_list, *found = _load_pg(series_ids, organization_id, limit)
    missing = sorted(set(series_ids) - {s.pk for s in series_list})
    if missing and _create_cursors(missing, organization_id):
        new_series, *more = _load_pg(missing, organization_id, limit)
        series_list = sorted([*series_list, *new_series], key=lambda s: s.pk)
        found = [old | new for old, new in zip(found, more, strict=True)]
    return series_list, *found


def _create_cursors(series_ids: list[int], organization_id: int) -> bool:
    new = list(Series.objects.filter(pk__in=series_ids, organization_id=organization_id))
    DetectionCursor.objects.bulk_create([DetectionCursor(series=s, organization_id=organization_id) for s in new],
                                        ignore_conflicts=True)
    return bool(new)


_SERIES_FIELDS = [f.attname for f in Series._meta.concrete_fields]
_RULE_FIELDS = [f.attname for f in Rule._meta.concrete_fields]
_STATE_FIELDS = [f.attname for f in RuleState._meta.concrete_fields]
_CURSOR_FIELDS = ["id", "series_id", "organization_id", "last_msg_id", "replay_from_us", "updated_at"]
# Sorted so that statement results come back in a known order.
_KINDS = sorted(VALUE_COLUMNS)


class _Prepared:
    """The pipeline's PostgreSQL statements, prepared once per database session and run with
    EXECUTE, several to a query string: parsing and planning them every pass cost more server time
    than running them. PREPARE outlives a rollback, so a session is marked once its statements
    exist; a session not marked yet looks them up in pg_prepared_statements first.

    DETECTION_PREPARED_STATEMENTS = False sends the statements themselves instead (parameters
    inlined with their types), for poolers that hand a session's transactions to different server
    connections (PgBouncer in transaction mode), where a PREPAREd name may not exist."""

    def __init__(self, prefix: str, statements: dict[str, tuple[str, str]]):
        self.statements = {f"{prefix}{name}": spec for name, spec in statements.items()}  # types, SQL ($n)
        self.prefix = prefix
        self.sessions: weakref.WeakSet = weakref.WeakSet()

    def sql(self, cursor, calls: list[tuple[str, list]]) -> tuple[str, list]:
        """(query string, parameters) running each (name, parameters) in turn."""
        if not getattr(settings, "DETECTION_PREPARED_STATEMENTS", True):
            return self._inline(calls)
        session = connection.connection
        if session not in self.sessions:
            cursor.execute("SELECT name FROM pg_prepared_statements")
            have = {name for (name,) in cursor.fetchall()}
            todo = [f"PREPARE {name}({types}) AS {sql}" for name, (types, sql) in self.statements.items()
                    if name not in have]
            if todo:
                cursor.execute("; ".join(todo))
            self.sessions.add(session)
        text = "; ".join(f"EXECUTE {self.prefix}{name}({', '.join(['%s'] * len(params))})" for name, params in calls)
        return text, [p for _, params in calls for p in params]

    def _inline(self, calls: list[tuple[str, list]]) -> tuple[str, list]:
        texts, values = [], []
        for name, params in calls:
            types, sql = self.statements[f"{self.prefix}{name}"]
            types = types.split(", ")

            def placeholder(match, params=params, types=types):
                values.append(params[int(match[1]) - 1])
                return f"%s::{types[int(match[1]) - 1]}"

            texts.append(re.sub(r"\$(\d+)", placeholder, sql))
        return "; ".join(texts), values


# The first timestamp after a cursor: message ids are ts_us * RANK_BITS + rank.
_AFTER = (f"CASE WHEN c.last_msg_id >= 0 THEN timestamptz 'epoch' + (c.last_msg_id / {RANK_BITS} + 1) "
          "* interval '1 microsecond' ELSE timestamptz 'epoch' END")
_BEFORE = f"timestamptz 'epoch' + {FAR_FUTURE_US} * interval '1 microsecond'"
_WANTED = "c.series_id = ANY($1) AND c.organization_id = $2"
_LOCK = (f"SELECT {', '.join(f'c.{f}' for f in _CURSOR_FIELDS)}, EXISTS(SELECT 1 FROM detection_detector d "
         f"WHERE d.series_id = c.series_id AND d.enabled AND d.status = '{DetectorStatus.READY.value}'), "
         f"{', '.join(f's.{f}' for f in _SERIES_FIELDS)} FROM detection_detectioncursor c "
         f"JOIN watchlists_series s ON s.id = c.series_id WHERE {_WANTED} ORDER BY c.series_id FOR UPDATE OF c")
_READS = {kind: (f"SELECT c.series_id, (extract(epoch from t.ts) * 1000000)::bigint, "
                 f"{', '.join(f't.{col}' for col in VALUE_COLUMNS[kind])} FROM detection_detectioncursor c "
                 f"JOIN watchlists_series s ON s.id = c.series_id AND s.kind = '{kind}' CROSS JOIN LATERAL "
                 f"(SELECT ts, {', '.join(VALUE_COLUMNS[kind])} FROM {RAW_TABLES[kind]} "
                 f"WHERE series_id = c.series_id AND ts >= {_AFTER} AND ts < {_BEFORE} ORDER BY ts LIMIT $3) t "
                 f"WHERE {_WANTED} ORDER BY c.series_id, t.ts")
          for kind in _KINDS}
_SPANS = PendingWork._meta.db_table
_DETECT = f"purpose = '{pending.DETECT}'"
# Series with spans not taken yet are stale whatever their rules: the run takes the spans.
_STALE = ("WITH behind AS MATERIALIZED (SELECT s.id, s.organization_id FROM watchlists_series s "
          "LEFT JOIN detection_detectioncursor c ON c.series_id = s.id "
          f"WHERE s.last_point_at IS NOT NULL AND (c.id IS NULL OR s.last_point_at >= {_AFTER})) "
          f"SELECT DISTINCT series_id, organization_id FROM {_SPANS} WHERE {_DETECT} UNION "
          "SELECT b.id, b.organization_id FROM behind b "
          "WHERE EXISTS (SELECT 1 FROM detection_rule r WHERE r.series_id = b.id AND r.enabled) "
          "OR EXISTS (SELECT 1 FROM watchlists_watchlistitem i JOIN detection_rule r ON r.watchlist_id = i.watchlist_id "
          "WHERE i.series_id = b.id AND r.enabled) "
          "OR EXISTS (SELECT 1 FROM detection_detector d WHERE d.series_id = b.id AND d.enabled "
          f"AND d.status = '{DetectorStatus.READY.value}') ORDER BY 1")
# The spans committed for the locked series, taken: the earliest start of each.
_TAKE = (f"WITH taken AS (DELETE FROM {_SPANS} p USING detection_detectioncursor c WHERE p.series_id = c.series_id "
         f"AND p.{_DETECT} "
         f"AND {_WANTED} RETURNING p.series_id, p.start_us) SELECT series_id, min(start_us) FROM taken GROUP BY 1")
_RULES = (f"SELECT t.sid, {', '.join(f'r.{c}' for c in _RULE_FIELDS)}, "
          f"{', '.join(f's.{c}' for c in _STATE_FIELDS)} FROM ("
          "SELECT id AS rid, series_id AS sid FROM detection_rule "
          "WHERE organization_id = $2 AND enabled AND series_id = ANY($1) "
          "UNION SELECT r.id, i.series_id FROM detection_rule r "
          "JOIN watchlists_watchlistitem i ON i.watchlist_id = r.watchlist_id "
          "WHERE r.organization_id = $2 AND r.enabled AND i.series_id = ANY($1)) t "
          "JOIN detection_rule r ON r.id = t.rid "
          "LEFT JOIN detection_rulestate s ON s.rule_id = t.rid AND s.series_id = t.sid ORDER BY t.sid, r.id")
# Existing states and the cursors in ONE statement; the states travel as one JSON parameter
# (adapting six arrays item by item cost more CPU than the query).
_SAVE = ("WITH v AS (SELECT * FROM jsonb_to_recordset($1) AS v(id bigint, snapshot text, msg bigint, "
         "stats jsonb, error text)), "
         "states AS (UPDATE detection_rulestate s SET snapshot = decode(v.snapshot, 'hex'), snapshot_msg_id = v.msg, "
         "snapshot_at = $2, stats = v.stats, last_error = v.error FROM v WHERE s.id = v.id) "
         "UPDATE detection_detectioncursor c SET last_msg_id = v.msg, replay_from_us = v.replay, updated_at = $2 "
         "FROM unnest($3::bigint[], $4::bigint[], $5::bigint[]) AS v(id, msg, replay) WHERE c.id = v.id")
_SQL = _Prepared("ah_detect_", {
    "lock": ("bigint[], bigint", _LOCK),
    "take": ("bigint[], bigint", _TAKE),
    **{f"read_{kind}": ("bigint[], bigint, bigint", sql) for kind, sql in _READS.items()},
    "rules": ("bigint[], bigint", _RULES),
    "save": ("jsonb, timestamptz, bigint[], bigint[], bigint[]", _SAVE),
})


def _int_array(values) -> str:
    """A bigint[] literal: one string parameter instead of a list the driver adapts item by item."""
    return "{" + ",".join("NULL" if v is None else str(int(v)) for v in values) + "}"


def _load_pg(series_ids: list[int], organization_id: int, limit: int) -> tuple:
    ids = _int_array(series_ids)
    alias = connection.alias
    with connection.cursor() as cursor:
        cursor.execute(*_SQL.sql(cursor, [("lock", [ids, organization_id]), ("take", [ids, organization_id]),
                                          *((f"read_{kind}", [ids, organization_id, limit]) for kind in _KINDS),
                                          ("rules", [ids, organization_id])]))
        locked = cursor.fetchall()
        cursor.nextset()
        late = dict(cursor.fetchall())
        reads = []
        for _ in _KINDS:
            cursor.nextset()
            reads.append(cursor.fetchall())
        cursor.nextset()
        rule_rows = cursor.fetchall()
    series_list, cursors = [], {}
    n = len(_CURSOR_FIELDS)
    for row in locked:
        series = Series.from_db(alias, _SERIES_FIELDS, row[n + 1:])
        cursor = DetectionCursor.from_db(alias, _CURSOR_FIELDS, row[:n])
        cursor.has_detector, cursor.series = row[n], series
        series_list.append(series)
        cursors[series.pk] = cursor
    points = {}
    for kind, rows in zip(_KINDS, reads, strict=True):
        points |= _points(rows, VALUE_COLUMNS[kind])
    rules, states = _rules_and_states(rule_rows, cursors, organization_id)
    return series_list, cursors, points, rules, states, late


def _points(rows: list[tuple], columns: list[str]) -> dict:
    """{series id: (times µs, engine columns)} from (series id, ts µs, *values) rows in series order."""
    if not rows:
        return {}
    sids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    ts = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
    values = np.array([r[2:] for r in rows], dtype=np.float64).reshape(len(rows), len(columns))
    starts = np.flatnonzero(np.r_[True, sids[1:] != sids[:-1]])
    out = {}
    for lo, hi in zip(starts, [*starts[1:], len(rows)], strict=True):
        batch = {c: values[lo:hi, i] for i, c in enumerate(columns)}
        batch["time"] = ts[lo:hi] // 1000
        out[int(sids[lo])] = (ts[lo:hi], batch)
    return out


def _rules_and_states(rows: list[tuple], cursors: dict, organization_id: int) -> tuple[dict, dict]:
    """Rules and states from (series id, *rule columns, *state columns) rows, for the locked series."""
    rules: dict[int, list[Rule]] = {}
    states = {}
    n = len(_RULE_FIELDS)
    alias = connection.alias
    for row in rows:
        series_id, rule_values, state_values = row[0], row[1:1 + n], row[1 + n:]
        if series_id not in cursors:
            continue
        rule = Rule.from_db(alias, _RULE_FIELDS, rule_values)
        rules.setdefault(series_id, []).append(rule)
        if state_values[0] is None:
            state = RuleState(rule_id=rule.pk, series_id=series_id, organization_id=organization_id)
        else:
            state = RuleState.from_db(alias, _STATE_FIELDS, state_values)
            if isinstance(state.stats, str):  # a raw cursor skips JSONField's from_db_value
                state.stats = json.loads(state.stats)
        states[(rule.pk, series_id)] = state
    return rules, states


def _load_orm(series_ids: list[int], organization_id: int, limit: int) -> tuple:
    """_load for other databases (embedded mode's SQLite): a query per kind of row."""
    def locked(ids):
        ready = Detector.objects.filter(series=OuterRef("series_id"), enabled=True, status=DetectorStatus.READY)
        return list(DetectionCursor.objects.select_for_update(of=("self",)).select_related("series")
                    .annotate(has_detector=Exists(ready))
                    .filter(series_id__in=ids, organization_id=organization_id).order_by("series_id"))

    cursors = {c.series_id: c for c in locked(series_ids)}
    missing = [i for i in series_ids if i not in cursors]
    if missing and _create_cursors(missing, organization_id):
        cursors |= {c.series_id: c for c in locked(missing)}
    series_list = [cursors[i].series for i in sorted(cursors)]
    late = {series_id: lo for series_id, (lo, _) in pending.take(pending.DETECT, organization_id, cursors).items()}
    points = {}
    for s in series_list:
        last = cursors[s.pk].last_msg_id
        points[s.pk] = series_batch(s, last // RANK_BITS + 1 if last >= 0 else 0, FAR_FUTURE_US, limit)
    rules = _rules_by_series(series_list, organization_id) if series_list else {}
    pairs = {(rule.pk, series_id): rule for series_id, rs in rules.items() for rule in rs}
    found = {(st.rule_id, st.series_id): st for st in RuleState.objects.filter(
        series_id__in={sid for _, sid in pairs}, rule_id__in={rid for rid, _ in pairs})} if pairs else {}
    states = {key: found.get(key) or RuleState(rule_id=key[0], series_id=key[1], organization_id=organization_id)
              for key in pairs}
    return series_list, cursors, points, rules, states, late


def _rules_by_series(series_list: list[Series], organization_id: int) -> dict[int, list[Rule]]:
    """Enabled rules of each series (its own and its watchlists'), in rule order."""
    ids = [s.pk for s in series_list]
    out: dict[int, dict[int, Rule]] = {}
    for rule in Rule.objects.filter(organization_id=organization_id, enabled=True, series_id__in=ids):
        out.setdefault(rule.series_id, {})[rule.pk] = rule
    members = list(WatchlistItem.objects.filter(organization_id=organization_id, series_id__in=ids,
                                                watchlist__rules__enabled=True)
                   .values_list("watchlist_id", "series_id").distinct())
    if members:
        shared: dict[int, list[Rule]] = {}
        for rule in Rule.objects.filter(organization_id=organization_id, enabled=True,
                                        watchlist_id__in={w for w, _ in members}):
            shared.setdefault(rule.watchlist_id, []).append(rule)
        for watchlist_id, series_id in members:
            for rule in shared.get(watchlist_id, []):
                out.setdefault(series_id, {})[rule.pk] = rule
    return {sid: [rules[k] for k in sorted(rules)] for sid, rules in out.items()}


STATE_FIELDS = ["snapshot", "snapshot_msg_id", "snapshot_at", "stats", "last_error"]


def _save(anomalies: list[Anomaly], states: dict[tuple[int, int], RuleState],
          cursors: list[DetectionCursor]) -> list[Anomaly]:
    """Writes the chunk in its transaction: the anomalies once (the unique key absorbs replays),
    the engine states and the cursors. Returns the anomalies created, with ids.

    PostgreSQL: new states (a pair's first chunk) in one INSERT, then ONE round trip for the rest:
    INSERT .. ON CONFLICT DO NOTHING RETURNING for the anomalies, one UPDATE for states and
    cursors and, when the chunk's atomic block is the outermost one, the COMMIT, as statements of
    one query string. Nothing may query after this."""
    now = timezone.now()
    for cursor in cursors:
        cursor.updated_at = now
    new = [st for st in states.values() if st.pk is None]
    old = [st for st in states.values() if st.pk is not None]
    if new:
        RuleState.objects.bulk_create(new)
    if connection.vendor != "postgresql":
        created = _insert_anomalies_orm(anomalies)
        if old:
            RuleState.objects.bulk_update(old, STATE_FIELDS)
        DetectionCursor.objects.bulk_update(cursors, ["last_msg_id", "replay_from_us", "updated_at"])
        return created
    payload = json.dumps([{"id": st.pk, "snapshot": None if st.snapshot is None else bytes(st.snapshot).hex(),
                           "msg": st.snapshot_msg_id, "stats": st.stats, "error": st.last_error} for st in old])
    with connection.cursor() as cursor:
        sql, params = _SQL.sql(cursor, [("save", [payload, now, _int_array(c.pk for c in cursors),
                                                  _int_array(c.last_msg_id for c in cursors),
                                                  _int_array(c.replay_from_us for c in cursors)])])
        if anomalies:
            insert_sql, insert_params = _insert_anomalies_sql(anomalies)
            sql, params = f"{insert_sql}; {sql}", [*insert_params, *params]
        if _commits_on_exit():
            # The block's own COMMIT then finds no transaction open and psycopg sends nothing;
            # Django runs the on_commit hooks (the live feed) as usual. One round trip fewer.
            sql += "; COMMIT"
        cursor.execute(sql, params)
        rows = cursor.fetchall() if anomalies else []
    return _created(anomalies, rows)


def _commits_on_exit() -> bool:
    """True in the outermost atomic block of an autocommit connection: the one whose exit commits
    (not a savepoint inside a caller's transaction, as in tests)."""
    return connection.commit_on_exit and not connection.savepoint_ids and len(connection.atomic_blocks) == 1


_RETURNED = ("series", "ts", "source", "metric_index")


def _insert_anomalies_sql(anomalies: list[Anomaly]) -> tuple[str, list]:
    """INSERT .. ON CONFLICT DO NOTHING RETURNING (id, *unique key) of the anomalies."""
    opts = Anomaly._meta
    fields = [f for f in opts.concrete_fields if not f.primary_key]
    for anomaly in anomalies:
        for f in fields:
            setattr(anomaly, f.attname, f.pre_save(anomaly, add=True))
    query = InsertQuery(Anomaly, on_conflict=OnConflict.IGNORE)
    query.insert_values(fields, anomalies)
    compiler = query.get_compiler(connection=connection)
    compiler.returning_fields = [opts.pk, *(opts.get_field(n) for n in _RETURNED)]
    ((sql, params),) = compiler.as_sql()
    return sql, list(params)


def _insert_anomalies_orm(anomalies: list[Anomaly]) -> list[Anomaly]:
    if not anomalies:
        return []
    Anomaly.objects.bulk_create(anomalies, ignore_conflicts=True)
    rows = Anomaly.objects.filter(series_id__in={a.series_id for a in anomalies}, ts__in={a.ts for a in anomalies},
                                  published_at__isnull=True).values_list("pk", *(f"{n}_id" if n == "series" else n
                                                                                 for n in _RETURNED))
    return _created(anomalies, rows)


def _created(anomalies: list[Anomaly], rows) -> list[Anomaly]:
    """The anomalies whose (id, *unique key) rows came back, with their ids set."""
    keyed = {(a.series_id, a.ts, a.source, a.metric_index): a for a in anomalies}
    created = []
    for pk, series_id, ts, source, metric_index in rows:
        anomaly = keyed.get((series_id, ts, source, metric_index))
        if anomaly is not None and anomaly.pk is None:
            anomaly.pk = pk
            anomaly._state.adding = False
            created.append(anomaly)
    return created


_PLANS: dict[tuple, object] = {}


def _plan(rule: Rule, series: Series):
    """The compiled plan, cached by definition (a changed rule is a new key)."""
    key = (rule.metrics, rule.window_size, rule.step, rule.round_time, series.kind)
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) > 10_000:
            _PLANS.clear()
        plan = _PLANS[key] = plan_for(rule, [series])
    return plan


class _KeptEngines:
    """The engine each (rule, series) pair left behind in this process, with the snapshot it
    saved: when the stored state is still exactly that snapshot (no other process ran the pair
    since, no rollback), the engine continues as it is instead of being restored from the bytes.
    Anything else restores. At most `budget` bytes of snapshots are kept, the least recent go."""

    def __init__(self, budget: int):
        self.budget, self.size = budget, 0
        self.items: dict[tuple[int, int], tuple[bytes, RuleEngine]] = {}

    def take(self, key: tuple[int, int]) -> tuple[bytes, RuleEngine] | None:
        kept = self.items.pop(key, None)
        if kept is not None:
            self.size -= len(kept[0])
        return kept

    def keep(self, key: tuple[int, int], snapshot: bytes, engine: RuleEngine) -> None:
        self.take(key)
        self.items[key] = (snapshot, engine)
        self.size += len(snapshot)
        while self.size > self.budget:
            self.take(next(iter(self.items)))

    def clear(self) -> None:
        self.items.clear()
        self.size = 0


_ENGINES = _KeptEngines(budget=64 * 2**20)


def _engine(rule: Rule, series: Series, state: RuleState) -> RuleEngine:
    plan = _plan(rule, series)
    snapshot = bytes(state.snapshot) if state.snapshot else None
    kept = _ENGINES.take((rule.pk, series.pk))
    if kept is not None and kept[0] == snapshot and kept[1].plan is plan:
        return kept[1]
    limits = {"snapshot_interval": snapshot_interval(), "max_windows": settings.RULE_MAX_WINDOWS_PER_CALL}
    if snapshot:
        return RuleEngine.restore(plan, snapshot, **limits)
    engine = RuleEngine(plan, **limits)
    align(engine, rule.origin_time_ms)
    return engine


def _run_rule(rule: Rule, series: Series, state: RuleState, columns: dict, ids: np.ndarray) -> list[Anomaly]:
    """Runs one rule over the chunk, leaving the new engine state in `state` (saved by the caller)."""
    if rule.origin_time_ms is None:
        # The first point any of the rule's series sends aligns every series' windows.
        Rule.objects.filter(pk=rule.pk, origin_time_ms__isnull=True).update(origin_time_ms=int(columns["time"][0]))
        rule.refresh_from_db(fields=["origin_time_ms"])
    try:
        engine = _engine(rule, series, state)
        outputs = engine.process(columns, ids)
    except ValueError as exc:  # a plan that no longer fits the series, or a stale snapshot
        state.last_error = str(exc)[:2000]
        logger.warning("rule %s cannot run on series %s: %s", rule.pk, series.pk, exc)
        return []
    state.snapshot = engine.snapshot()
    state.snapshot_msg_id = engine.snapshot_msg_id
    state.snapshot_at = timezone.now()
    state.stats = engine.stats()
    state.last_error = ""
    _ENGINES.keep((rule.pk, series.pk), state.snapshot, engine)
    return rule_anomalies(rule, series, outputs)


def rule_anomalies(rule: Rule, series: Series, outputs) -> list[Anomaly]:
    """The anomalies of a rule's engine outputs (unsaved); history runs build theirs the same way."""
    return [Anomaly(organization_id=series.organization_id, series=series, rule=rule, source=f"rule:{rule.pk}",
                    ts=datetime.fromtimestamp(out.time / 1000, tz=UTC), metric_index=out.metric_index,
                    text=out.metric_text, observed=out.observed, severity=rule.severity)
            for out in outputs]


def write_anomalies(anomalies: list[Anomaly], organization_id: int) -> list[Anomaly]:
    """Writes anomalies in the caller's transaction, once (the unique key absorbs replays), and
    announces the created ones after commit as a detection pass does. For writers other than the
    streaming pass (history runs); returns the anomalies created, with ids."""
    if not anomalies:
        return []
    if connection.vendor != "postgresql":
        created = _insert_anomalies_orm(anomalies)
    else:
        sql, params = _insert_anomalies_sql(anomalies)
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            created = _created(anomalies, cursor.fetchall())
    transaction.on_commit(lambda: _announce(organization_id, anomalies, created))
    return created


def _severity(score: float) -> str:
    return "critical" if score >= 0.97 else "high" if score >= 0.85 else "medium" if score >= 0.6 else "low"


def _run_detector(detector: Detector, series: Series, ts_us: np.ndarray, columns: dict) -> list[Anomaly]:
    """Scores the chunk with the active model, continuing its streaming state; stores the state."""
    detector.series = series
    try:
        version, model = detector_services.active_model(detector)
    except ArtifactError as exc:  # a corrupt model must not stop the series' other detection
        logger.error("detector %s: active model refused: %s", detector.pk, exc)
        Detector.objects.filter(pk=detector.pk).update(status=DetectorStatus.FAILED)
        return []
    if model is None:
        return []
    data = {"ts": ts_us, **{k: v for k, v in columns.items() if k != "time"}}
    frame = detector_services.detector_frame(detector, int(ts_us[0]), int(ts_us[-1]) + 1, data=data)
    if detector.stream_version != version.version:
        # A model without state yet: warm it on the points just before this chunk (no anomalies).
        before = reader.read_raw_before(series.pk, series.kind, int(ts_us[0]), model.min_history + 1)
        if len(before["ts"]):
            model.score(detector_services.detector_frame(detector, int(before["ts"][0]), int(ts_us[0]), data=before))
    result = model.score(frame)
    Detector.objects.filter(pk=detector.pk).update(stream_state=model.state_to_bytes(), stream_version=version.version)
    return detector_anomalies(detector, series, version, frame, result, ts_us)


def detector_anomalies(detector: Detector, series: Series, version, frame, result, ts_us: np.ndarray
                       ) -> list[Anomaly]:
    """The anomalies (unsaved) among a model's scores of `frame`: score at or over the threshold."""
    hits = np.flatnonzero((result.score >= detector.threshold) & ~result.warming_up)
    out = []
    for i in hits:
        score = float(result.score[i])
        explanation = result.explanation[i] if i < len(result.explanation) else {}
        out.append(Anomaly(
            organization_id=series.organization_id, series=series, detector=detector, source=f"detector:{detector.pk}",
            ts=datetime.fromtimestamp(int(ts_us[i]) / 1e6, tz=UTC), metric_index=0,
            text=f"{detector.kind} score {score:.2f} ({explanation.get('channel', 'value')})",
            observed={"value": _finite(frame["value"].iloc[i])},
            expected={"value": _finite(result.expected[i]), "lower": _finite(result.lower[i]),
                      "upper": _finite(result.upper[i]), "explanation": _jsonable(explanation)},
            score=score, severity=_severity(score), model_version=f"v{version.version}"))
    return out


def _finite(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return _finite(value)
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    return value
