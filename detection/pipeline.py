"""The streaming detection pipeline: new points of a series -> its rules -> anomalies, exactly once.

Per series, a cursor row (locked FOR UPDATE) serialises workers, so a series' engine state is
never interleaved, while different series run in parallel. Points are consumed in time order in
chunks of SNAPSHOT_INTERVAL messages; each chunk commits its anomalies, every rule's engine
snapshot (with the last message id it includes) and the cursor in ONE transaction. A worker that
dies mid-chunk loses only that uncommitted chunk, and the next run resumes from the snapshot:
no gap, no duplicate.

Message ids: ts_us * 1024 + rank among equal timestamps. A chunk never splits a timestamp, and
the next read starts after the last one, so ids only grow. Points that arrive later than the
cursor (ts <= processed time) are stored and rolled up, but not re-streamed: backtests cover them.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from watchlists.models import Series
from watchlists.store import reader
from watchlists.store.timeconv import to_us

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
    """Processes every new point of a series; returns anomalies written. Safe to run concurrently
    and repeatedly (the cursor lock and the unique anomaly key absorb duplicates)."""
    series = Series.objects.filter(pk=series_id, organization_id=organization_id).first()
    if series is None:
        return 0
    written = 0
    while True:
        with metrics.CHUNK_SECONDS.time():
            count, more = _run_chunk(series)
        written += count
        if not more:
            return written


@transaction.atomic
def _run_chunk(series: Series) -> tuple[int, bool]:
    cursor, _ = DetectionCursor.objects.get_or_create(series=series, defaults={"organization_id": series.organization_id})
    cursor = DetectionCursor.objects.select_for_update().get(pk=cursor.pk)
    after_us = (cursor.last_msg_id // RANK_BITS + 1) if cursor.last_msg_id >= 0 else 0
    limit = snapshot_interval()
    # Read RANK_BITS extra rows so that a timestamp group at the limit can be completed.
    ts_us, raw = series_batch(series, after_us, FAR_FUTURE_US, limit + RANK_BITS)
    take = _whole_timestamps(ts_us, limit)
    if not take:
        return 0, False
    more = take < len(ts_us)
    ids = message_ids(ts_us[:take])
    columns = {k: v[:take] for k, v in raw.items()}
    anomalies = []
    for rule in rules_for(series):
        anomalies += _run_rule(rule, series, columns, ids)
    for detector in Detector.objects.filter(series=series, enabled=True, status=DetectorStatus.READY):
        anomalies += _run_detector(detector, series, ts_us[:take], columns)
    created = Anomaly.objects.bulk_create(anomalies, ignore_conflicts=True) if anomalies else []
    metrics.POINTS_DETECTED.inc(take)
    for anomaly in anomalies:
        metrics.ANOMALIES.labels(anomaly.source.split(":")[0]).inc()
    cursor.last_msg_id = int(ids[-1])
    cursor.save(update_fields=["last_msg_id", "updated_at"])
    if anomalies:
        transaction.on_commit(lambda: anomalies_detected.send(
            sender=Anomaly, organization_id=series.organization_id, series_id=series.pk,
            anomaly_keys=[(a.ts, a.source, a.metric_index) for a in anomalies]))
    return len(created), more


def _run_rule(rule: Rule, series: Series, columns: dict, ids: np.ndarray) -> list[Anomaly]:
    state, _ = RuleState.objects.get_or_create(rule=rule, series=series,
                                               defaults={"organization_id": series.organization_id})
    try:
        plan = plan_for(rule, [series])
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
        state.save(update_fields=["last_error"])
        logger.warning("rule %s cannot run on series %s: %s", rule.pk, series.pk, exc)
        return []
    state.snapshot = engine.snapshot()
    state.snapshot_msg_id = engine.snapshot_msg_id
    state.snapshot_at = timezone.now()
    state.stats = engine.stats()
    state.last_error = ""
    state.save()
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
