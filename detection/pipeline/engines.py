"""Rules' engines and detectors' models over a chunk, and the engines a worker keeps between chunks.

A rule's engine stays in the worker process between chunks and is used again only while the
stored state is still exactly the snapshot it saved (no other process ran the pair since, no
rollback); anything else restores it from the stored bytes.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
from django.conf import settings
from django.utils import timezone

from watchlists.models import Series
from watchlists.store import reader

from ..detectors import ArtifactError
from ..models import Anomaly, Detector, DetectorStatus, Rule, RuleState
from ..rules import RuleEngine
from ..services import detectors as detector_services
from ..services.rules import align, plan_for
from .messages import snapshot_interval

logger = logging.getLogger(__name__)
_PLANS: dict[tuple, object] = {}


def plan(rule: Rule, series: Series):
    """The compiled plan, cached by definition (a changed rule is a new key)."""
    key = (rule.metrics, rule.window_size, rule.step, rule.round_time, series.kind)
    found = _PLANS.get(key)
    if found is None:
        if len(_PLANS) > 10_000:
            _PLANS.clear()
        found = _PLANS[key] = plan_for(rule, [series])
    return found


class KeptEngines:
    """The engine each (rule, series) pair left behind in this process, with the snapshot it
    saved. At most `budget` bytes of snapshots are kept, the least recent go."""

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


KEPT = KeptEngines(budget=64 * 2**20)


def _engine(rule: Rule, series: Series, state: RuleState) -> RuleEngine:
    compiled = plan(rule, series)
    snapshot = bytes(state.snapshot) if state.snapshot else None
    kept = KEPT.take((rule.pk, series.pk))
    if kept is not None and kept[0] == snapshot and kept[1].plan is compiled:
        return kept[1]
    limits = {"snapshot_interval": snapshot_interval(), "max_windows": settings.RULE_MAX_WINDOWS_PER_CALL}
    if snapshot:
        return RuleEngine.restore(compiled, snapshot, **limits)
    engine = RuleEngine(compiled, **limits)
    align(engine, rule.origin_time_ms)
    return engine


def run_rule(rule: Rule, series: Series, state: RuleState, columns: dict, ids: np.ndarray) -> list[Anomaly]:
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
    KEPT.keep((rule.pk, series.pk), state.snapshot, engine)
    return rule_anomalies(rule, series, outputs)


def rule_anomalies(rule: Rule, series: Series, outputs) -> list[Anomaly]:
    """The anomalies of a rule's engine outputs (unsaved); history runs build theirs the same way."""
    return [Anomaly(organization_id=series.organization_id, series=series, rule=rule, source=f"rule:{rule.pk}",
                    ts=datetime.fromtimestamp(out.time / 1000, tz=UTC), metric_index=out.metric_index,
                    text=out.metric_text, observed=out.observed, severity=rule.severity)
            for out in outputs]


def run_detector(detector: Detector, series: Series, ts_us: np.ndarray, columns: dict) -> list[Anomaly]:
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


def _severity(score: float) -> str:
    return "critical" if score >= 0.97 else "high" if score >= 0.85 else "medium" if score >= 0.6 else "low"


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
