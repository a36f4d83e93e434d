"""The streaming detection pipeline: new points of a series -> its rules -> anomalies, exactly once.

Per series, a cursor row (locked FOR UPDATE) serialises workers, so a series' engine state is
never interleaved, while different series run in parallel. Points are consumed in time order in
chunks of SNAPSHOT_INTERVAL messages; each chunk commits its anomalies, every rule's engine
snapshot (with the last message id it includes) and the cursor in ONE transaction. A worker that
dies mid-chunk loses only that uncommitted chunk, and the next run resumes from the snapshot:
no gap, no duplicate. A pass (run_many) takes many series of one organization at once, one
transaction per chunk for all of them, with a fixed number of statements whatever their count.

Message ids: ts_us * 1024 + rank among equal timestamps. A chunk never splits a timestamp, and
the next read starts after the last one, so ids only grow. Points that arrive later than the
cursor (ts <= processed time) are stored and rolled up, but not re-streamed: backtests cover them.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q
from django.db.models.constants import OnConflict
from django.db.models.sql import InsertQuery
from django.utils import timezone
from psycopg.types.json import Jsonb

from watchlists.models import Series, WatchlistItem
from watchlists.store import reader
from watchlists.store.schema import RAW_TABLES
from watchlists.store.timeconv import from_us, to_us
from watchlists.store.writer import VALUE_COLUMNS

from . import metrics
from .detectors import ArtifactError
from .models import Anomaly, DetectionCursor, Detector, DetectorStatus, Rule, RuleState
from .rules import RuleEngine
from .services import detectors as detector_services
from .services.rules import align, plan_for, series_batch
from .signals import anomalies_detected

logger = logging.getLogger(__name__)
RANK_BITS = 1024
FAR_FUTURE_US = 4_102_444_800 * 1_000_000  # 2100-01-01


def snapshot_interval() -> int:
    return getattr(settings, "DETECTION_SNAPSHOT_INTERVAL", 10_000)


def message_ids(ts_us: np.ndarray) -> np.ndarray:
    n = len(ts_us)
    starts = np.flatnonzero(np.r_[True, ts_us[1:] != ts_us[:-1]])
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))
    return ts_us * RANK_BITS + np.minimum(rank, RANK_BITS - 1)


def stale_series() -> list[tuple[int, int]]:
    """(series id, organization id) of series with points newer than their cursor and a rule."""
    with_rules = Series.objects.filter(Q(rules__enabled=True) | Q(watchlists__rules__enabled=True),
                                       last_point_at__isnull=False).distinct()
    out = []
    for series in with_rules.select_related("detection_cursor"):
        cursor = getattr(series, "detection_cursor", None)
        processed_us = (cursor.last_msg_id // RANK_BITS) if cursor else -1
        if to_us(series.last_point_at) > processed_us:
            out.append((series.pk, series.organization_id))
    return out


def rules_for(series: Series):
    return (Rule.objects.filter(organization_id=series.organization_id, enabled=True)
            .filter(Q(series=series) | Q(watchlist__items__series=series)).distinct().order_by("pk"))


def _whole_timestamps(ts_us: np.ndarray, limit: int) -> int:
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
    pending = sorted(set(series_ids))
    written = 0
    while pending:
        with metrics.CHUNK_SECONDS.time():
            count, pending = _run_chunk(pending, organization_id)
        written += count
    return written


@transaction.atomic
def _run_chunk(series_ids: list[int], organization_id: int) -> tuple[int, list[int]]:
    """One chunk of every series given; returns (anomalies written, the series with more to read)."""
    series_list, cursors = _lock_cursors(series_ids, organization_id)
    if not series_list:
        return 0, []
    limit = snapshot_interval()
    # Read RANK_BITS extra rows so that a timestamp group at the limit can be completed.
    points = _read_new(series_list, cursors, limit + RANK_BITS)
    active = [s for s in series_list if len(points[s.pk][0])]
    if not active:
        return 0, []
    rules, states = _rules_and_states(active)
    detectors: dict[int, list[Detector]] = {}
    with_detectors = [s for s in active if cursors[s.pk].has_detector]
    if with_detectors:
        for detector in Detector.objects.filter(series__in=with_detectors, enabled=True, status=DetectorStatus.READY):
            detectors.setdefault(detector.series_id, []).append(detector)
    anomalies, more, advanced = [], [], []
    for series in active:
        ts_us, raw = points[series.pk]
        take = _whole_timestamps(ts_us, limit)
        if take < len(ts_us):
            more.append(series.pk)
        ids = message_ids(ts_us[:take])
        columns = {k: v[:take] for k, v in raw.items()}
        for rule in rules.get(series.pk, []):
            anomalies += _run_rule(rule, series, states[(rule.pk, series.pk)], columns, ids)
        for detector in detectors.get(series.pk, []):
            anomalies += _run_detector(detector, series, ts_us[:take], columns)
        metrics.POINTS_DETECTED.inc(take)
        cursor = cursors[series.pk]
        cursor.last_msg_id = int(ids[-1])
        advanced.append(cursor)
    created = _insert_anomalies(anomalies)
    _save_progress(states, advanced)
    for anomaly in anomalies:
        metrics.ANOMALIES.labels(anomaly.source.split(":")[0]).inc()
    if anomalies:
        transaction.on_commit(lambda: _announce(series_list[0].organization_id, anomalies, created))
    return len(created), more


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


def _lock_cursors(series_ids: list[int], organization_id: int) -> tuple[list[Series], dict[int, DetectionCursor]]:
    """The organization's series among the ids, with their cursors locked FOR UPDATE in series
    order (no deadlock between workers); one query once every cursor exists."""
    def locked(ids):
        # has_detector rides along so that passes over series without detectors skip that query.
        ready = Detector.objects.filter(series=OuterRef("series_id"), enabled=True, status=DetectorStatus.READY)
        return list(DetectionCursor.objects.select_for_update(of=("self",)).select_related("series")
                    .annotate(has_detector=Exists(ready))
                    .filter(series_id__in=ids, organization_id=organization_id).order_by("series_id"))

    cursors = {c.series_id: c for c in locked(series_ids)}
    missing = [i for i in series_ids if i not in cursors]
    if missing:
        new = list(Series.objects.filter(pk__in=missing, organization_id=organization_id))
        if new:
            DetectionCursor.objects.bulk_create([DetectionCursor(series=s, organization_id=organization_id)
                                                 for s in new], ignore_conflicts=True)
            cursors |= {c.series_id: c for c in locked([s.pk for s in new])}
    series_list = [cursors[i].series for i in sorted(cursors)]
    return series_list, cursors


def _read_new(series_list: list[Series], cursors: dict[int, DetectionCursor], limit: int) -> dict:
    """{series id: (times µs, engine columns)} of the points after each cursor, at most `limit` each.
    On PostgreSQL one query per kind for all the series (a LATERAL read per series)."""
    after = {s.pk: (cursors[s.pk].last_msg_id // RANK_BITS + 1) if cursors[s.pk].last_msg_id >= 0 else 0
             for s in series_list}
    if connection.vendor != "postgresql":
        return {s.pk: series_batch(s, after[s.pk], FAR_FUTURE_US, limit) for s in series_list}
    out = {}
    for kind in {s.kind for s in series_list}:
        group = [s for s in series_list if s.kind == kind]
        columns = VALUE_COLUMNS[kind]
        names = ", ".join(f"t.{c}" for c in columns)
        sql = (f"SELECT c.sid, (extract(epoch from t.ts) * 1000000)::bigint, {names} "
               f"FROM unnest(%s::bigint[], %s::timestamptz[]) AS c(sid, after) CROSS JOIN LATERAL "
               f"(SELECT ts, {', '.join(columns)} FROM {RAW_TABLES[kind]} WHERE series_id = c.sid AND ts >= c.after "
               f"AND ts < %s ORDER BY ts LIMIT %s) t ORDER BY c.sid, t.ts")
        with connection.cursor() as cursor:
            cursor.execute(sql, [[s.pk for s in group], [from_us(after[s.pk]) for s in group], from_us(FAR_FUTURE_US),
                                 limit])
            rows = cursor.fetchall()
        sids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        ts = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        values = np.array([r[2:] for r in rows], dtype=np.float64).reshape(len(rows), len(columns))
        for s in group:
            mask = sids == s.pk
            batch = {c: values[mask, i] for i, c in enumerate(columns)}
            batch["time"] = ts[mask] // 1000
            out[s.pk] = (ts[mask], batch)
    return out


def _rules_by_series(series_list: list[Series]) -> dict[int, list[Rule]]:
    """Enabled rules of each series (its own and its watchlists'), in rule order."""
    ids = [s.pk for s in series_list]
    organization_id = series_list[0].organization_id
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


_RULE_FIELDS = [f.attname for f in Rule._meta.concrete_fields]
_STATE_FIELDS = [f.attname for f in RuleState._meta.concrete_fields]


def _rules_and_states(series_list: list[Series]) -> tuple[dict[int, list[Rule]], dict]:
    """(enabled rules of each series, its own and its watchlists', in rule order; the engine state
    of every (rule, series) pair, a fresh unsaved one for a new pair), read under the cursor locks.
    PostgreSQL: one query for all of it."""
    if connection.vendor != "postgresql":
        rules = _rules_by_series(series_list)
        return rules, _states(rules)
    ids = [s.pk for s in series_list]
    organization_id = series_list[0].organization_id
    rule_cols = ", ".join(f"r.{c}" for c in _RULE_FIELDS)
    state_cols = ", ".join(f"s.{c}" for c in _STATE_FIELDS)
    sql = (f"SELECT t.sid, {rule_cols}, {state_cols} FROM ("
           "SELECT id AS rid, series_id AS sid FROM detection_rule "
           "WHERE organization_id = %s AND enabled AND series_id = ANY(%s) "
           "UNION SELECT r.id, i.series_id FROM detection_rule r "
           "JOIN watchlists_watchlistitem i ON i.watchlist_id = r.watchlist_id "
           "WHERE r.organization_id = %s AND r.enabled AND i.series_id = ANY(%s)) t "
           "JOIN detection_rule r ON r.id = t.rid "
           "LEFT JOIN detection_rulestate s ON s.rule_id = t.rid AND s.series_id = t.sid ORDER BY t.sid, r.id")
    with connection.cursor() as cursor:
        cursor.execute(sql, [organization_id, ids, organization_id, ids])
        rows = cursor.fetchall()
    rules: dict[int, list[Rule]] = {}
    states = {}
    n = len(_RULE_FIELDS)
    for row in rows:
        series_id, rule_values, state_values = row[0], row[1:1 + n], row[1 + n:]
        rule = Rule.from_db(connection.alias, _RULE_FIELDS, rule_values)
        rules.setdefault(series_id, []).append(rule)
        if state_values[0] is None:
            state = RuleState(rule_id=rule.pk, series_id=series_id, organization_id=organization_id)
        else:
            state = RuleState.from_db(connection.alias, _STATE_FIELDS, state_values)
            if isinstance(state.stats, str):  # a raw cursor skips JSONField's from_db_value
                state.stats = json.loads(state.stats)
        states[(rule.pk, series_id)] = state
    return rules, states


def _states(rules: dict[int, list[Rule]]) -> dict[tuple[int, int], RuleState]:
    """The engine state of every (rule, series) pair, read under the cursor locks; new pairs get a
    fresh unsaved state."""
    pairs = {(rule.pk, series_id): rule for series_id, rs in rules.items() for rule in rs}
    if not pairs:
        return {}
    found = {(st.rule_id, st.series_id): st for st in RuleState.objects.filter(
        series_id__in={sid for _, sid in pairs}, rule_id__in={rid for rid, _ in pairs})}
    return {key: found.get(key) or RuleState(rule_id=key[0], series_id=key[1], organization_id=rule.organization_id)
            for key, rule in pairs.items()}


STATE_FIELDS = ["snapshot", "snapshot_msg_id", "snapshot_at", "stats", "last_error"]


def _save_progress(states: dict[tuple[int, int], RuleState], cursors: list[DetectionCursor]) -> None:
    """Engine states and cursors, in the chunk's transaction. PostgreSQL: new states in one
    INSERT, then existing states and cursors in ONE statement (bulk_update's CASE expressions
    cost more CPU than the query; a second UPDATE costs another round trip)."""
    now = timezone.now()
    for cursor in cursors:
        cursor.updated_at = now
    new = [st for st in states.values() if st.pk is None]
    old = [st for st in states.values() if st.pk is not None]
    if new:
        RuleState.objects.bulk_create(new)
    if connection.vendor != "postgresql":
        if old:
            RuleState.objects.bulk_update(old, STATE_FIELDS)
        DetectionCursor.objects.bulk_update(cursors, ["last_msg_id", "updated_at"])
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "WITH states AS (UPDATE detection_rulestate s SET snapshot = v.snapshot, snapshot_msg_id = v.msg, "
            "snapshot_at = v.at, stats = v.stats, last_error = v.error FROM unnest(%s::bigint[], %s::bytea[], "
            "%s::bigint[], %s::timestamptz[], %s::jsonb[], %s::text[]) AS v(id, snapshot, msg, at, stats, error) "
            "WHERE s.id = v.id) "
            "UPDATE detection_detectioncursor c SET last_msg_id = v.msg, updated_at = %s "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS v(id, msg) WHERE c.id = v.id",
            [[st.pk for st in old], [None if st.snapshot is None else bytes(st.snapshot) for st in old],
             [st.snapshot_msg_id for st in old], [st.snapshot_at for st in old],
             [Jsonb(st.stats) for st in old], [st.last_error for st in old],
             now, [c.pk for c in cursors], [c.last_msg_id for c in cursors]])


def _insert_anomalies(anomalies: list[Anomaly]) -> list[Anomaly]:
    """Writes the anomalies once (the unique key absorbs replays); returns those created, with ids.
    PostgreSQL: one INSERT .. ON CONFLICT DO NOTHING RETURNING; elsewhere a read-back."""
    if not anomalies:
        return []
    keyed = {(a.series_id, a.ts, a.source, a.metric_index): a for a in anomalies}
    if connection.vendor != "postgresql":
        Anomaly.objects.bulk_create(anomalies, ignore_conflicts=True)
        rows = Anomaly.objects.filter(series_id__in={k[0] for k in keyed}, ts__in={k[1] for k in keyed},
                                      published_at__isnull=True).values_list("pk", "series_id", "ts", "source",
                                                                             "metric_index")
    else:
        opts = Anomaly._meta
        fields = [f for f in opts.concrete_fields if not f.primary_key]
        for anomaly in anomalies:
            for f in fields:
                setattr(anomaly, f.attname, f.pre_save(anomaly, add=True))
        query = InsertQuery(Anomaly, on_conflict=OnConflict.IGNORE)
        query.insert_values(fields, anomalies)
        compiler = query.get_compiler(connection=connection)
        compiler.returning_fields = [opts.pk, *(opts.get_field(n) for n in ("series", "ts", "source", "metric_index"))]
        ((sql, params),) = compiler.as_sql()
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
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


def _run_rule(rule: Rule, series: Series, state: RuleState, columns: dict, ids: np.ndarray) -> list[Anomaly]:
    """Runs one rule over the chunk, leaving the new engine state in `state` (saved by the caller)."""
    try:
        plan = _plan(rule, series)
        if rule.origin_time_ms is None:
            # The first point any of the rule's series sends aligns every series' windows.
            Rule.objects.filter(pk=rule.pk, origin_time_ms__isnull=True).update(origin_time_ms=int(columns["time"][0]))
            rule.refresh_from_db(fields=["origin_time_ms"])
        if state.snapshot:
            engine = RuleEngine.restore(plan, bytes(state.snapshot), snapshot_interval=snapshot_interval())
        else:
            engine = RuleEngine(plan, snapshot_interval=snapshot_interval())
            align(engine, rule.origin_time_ms)
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
    return [Anomaly(organization_id=series.organization_id, series=series, rule=rule, source=f"rule:{rule.pk}",
                    ts=datetime.fromtimestamp(out.time / 1000, tz=UTC), metric_index=out.metric_index,
                    text=out.metric_text, observed=out.observed, severity=rule.severity)
            for out in outputs]


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
