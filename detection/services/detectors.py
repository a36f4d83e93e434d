"""Learned detectors: creation, training into the model registry, activation, drift, precision.

Training runs as a Celery task per (organization, detector); the run row is claimed with a
conditional update, so a re-delivered task does nothing. Models live in the database
(ModelVersion.artifact); loading never unpickles (see detection.detectors.serialization).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd
from django.db import transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from accounts.tenancy import Actor
from anomalyhub.lib.errors import InvalidError
from watchlists.features import compute_features
from watchlists.models import Series
from watchlists.store import reader
from watchlists.store.schema import FEATURE_COLUMNS
from watchlists.store.timeconv import from_us, to_us

from ..detectors import DETECTORS, ArtifactError, get_detector_class, load_detector
from ..detectors.drift import drifted_features, psi_table
from ..models import Anomaly, Detector, DetectorStatus, Feedback, ModelVersion, TrainingRun

logger = logging.getLogger(__name__)
PUBLIC_KINDS = ("robust_zscore", "isolation_forest", "lstm_forecast", "ensemble")
SUPPORTED_SERIES = ("bar", "metric")
DEFAULT_TRAINING_WINDOW = timedelta(days=90)
VALIDATION_FRACTION = 0.05  # seed 000: 95 % train, 5 % validation
ACTIVATION_TOLERANCE = 1.10  # "not worse": within 10 % of the active model's validation loss
BASELINE_SAMPLE = 2000
FEATURE_LOOKBACK_BARS = 30  # the longest feature window (volume_ratio: 20 bars; 15 minutes) plus margin
DRIFT_THRESHOLD = 0.25
TRAINING_HEARTBEAT = timedelta(seconds=10)
TRAINING_STALE_AFTER = timedelta(seconds=90)  # nine missed heartbeats: the worker is gone
TRAINING_LOST_AFTER = timedelta(minutes=10)


class DetectorInvalid(InvalidError):
    code = "invalid_detector"


def build(detector: Detector):
    """A fresh, untrained detector object for this configuration (market-relative when benchmarked)."""
    params = dict(detector.params or {})
    if detector.series.exchange:
        params.setdefault("calendar", detector.series.exchange)
    if detector.benchmark_id:
        inner = {k: v for k, v in params.items() if k != "calendar"}
        return get_detector_class("market_relative")(inner=detector.kind, inner_params=inner,
                                                     calendar=params.get("calendar"))
    return get_detector_class(detector.kind)(**params)


def _validate(detector: Detector) -> None:
    if detector.kind not in PUBLIC_KINDS:
        raise DetectorInvalid(f"Unknown detector kind '{detector.kind}'.",
                              details={"kind": [f"Choose one of {list(PUBLIC_KINDS)}."]})
    if detector.series.kind not in SUPPORTED_SERIES:
        raise DetectorInvalid("Learned detectors score bar and metric series; for ticks, score a 1-minute bar "
                              "series of the same symbol.", details={"series": ["Tick series are not supported."]})
    if detector.benchmark_id and detector.benchmark.organization_id != detector.organization_id:
        raise DetectorInvalid("Unknown benchmark series.", details={"benchmark": ["Not found."]})
    try:
        build(detector)
    except (TypeError, ValueError, KeyError) as exc:
        raise DetectorInvalid(f"Invalid parameters: {exc}", details={"params": [str(exc)]}) from None


@transaction.atomic
def save_detector(*, actor: Actor, detector: Detector) -> Detector:
    """Creates or updates a detector; changing kind, params or benchmark needs retraining."""
    actor.require("change")
    detector.organization_id = actor.organization_id
    _validate(detector)
    if detector.pk:
        before = Detector.objects.get(pk=detector.pk)
        if (before.kind, before.params, before.benchmark_id) != (detector.kind, detector.params, detector.benchmark_id):
            detector.needs_retraining = True
    detector.save()
    return detector


def delete_detector(*, actor: Actor, detector: Detector) -> None:
    actor.require("change")
    detector.delete()


def detector_frame(detector: Detector, start_us: int, end_us: int, data: dict | None = None) -> pd.DataFrame:
    """The detector's input for [start, end): ts (ns), value (close for bars), OHLCV, features,
    and the benchmark's price at each time (last known, never a later one).

    Features are computed here from the bars (with a lookback) rather than read from the feature
    table, which is refreshed asynchronously: training and scoring see exactly the same inputs."""
    series = detector.series
    if data is None:
        data = reader.read_raw(series.pk, series.kind, start_us, end_us)
    frame = pd.DataFrame({"ts": data["ts"] * 1000})
    if series.kind == "bar":
        for column in ("open", "high", "low", "close", "volume"):
            frame[column] = data[column]
        frame["value"] = data["close"]
        if series.bar_seconds in (None, 60) and len(frame):
            frame = _with_features(series, frame, start_us)
    else:
        frame["value"] = data["value"]
    if detector.benchmark_id:
        bench = detector.benchmark
        b = reader.read_raw(bench.pk, bench.kind, start_us - 86_400_000_000, end_us)
        bvalues = b["close"] if bench.kind == "bar" else b[{"metric": "value", "trade": "price"}[bench.kind]]
        right = pd.DataFrame({"ts": b["ts"] * 1000, "benchmark": bvalues})
        frame = pd.merge_asof(frame, right, on="ts", direction="backward")
    frame.attrs["calendar"] = series.exchange or None
    return frame


def _with_features(series: Series, frame: pd.DataFrame, start_us: int) -> pd.DataFrame:
    before = reader.read_raw_before(series.pk, "bar", start_us, FEATURE_LOOKBACK_BARS)
    history = pd.DataFrame({"ts": before["ts"] * 1000, **{c: before[c] for c in ("open", "high", "low", "close",
                                                                                  "volume")}})
    bars = pd.concat([history, frame[["ts", "open", "high", "low", "close", "volume"]]], ignore_index=True)
    features = compute_features(bars).reset_index(drop=True).iloc[len(history):]
    return pd.concat([frame.reset_index(drop=True), features.reset_index(drop=True)[list(FEATURE_COLUMNS)]], axis=1)


def request_training(*, actor: Actor, detector: Detector, start: datetime | None = None,
                     end: datetime | None = None, reason: str = TrainingRun.Reason.REQUESTED) -> TrainingRun:
    """Queues a training run (one at a time per detector: a queued or running one is returned)."""
    actor.require("change")
    with transaction.atomic():
        Detector.objects.select_for_update().get(pk=detector.pk)
        active = TrainingRun.objects.filter(detector=detector, status__in=["queued", "running"]).first()
        if active:
            return active
        run = TrainingRun.objects.create(organization_id=detector.organization_id, detector=detector, start=start,
                                         end=end, requested_by=actor.credited_user, reason=reason)
        transaction.on_commit(lambda: _start_training(run.pk, run.organization_id))
    return run


def _start_training(run_id: int, organization_id: int) -> None:
    """Queues the run; in embedded mode (tasks in-process) trains on a thread instead, so the
    request that asked returns at once and the page shows the progress (as history runs do)."""
    from django.conf import settings
    from django.db import close_old_connections

    from ..tasks import train_detector

    if settings.CELERY_TASK_ALWAYS_EAGER and getattr(settings, "EMBEDDED_BACKGROUND_THREADS", False):
        def train():
            try:
                run_training(run_id, organization_id)
            finally:
                close_old_connections()
        threading.Thread(target=train, daemon=True, name=f"training-{run_id}").start()
        return
    train_detector.delay(run_id, organization_id)


def _progress(run: TrainingRun, fraction: float, message: str) -> None:
    TrainingRun.objects.filter(pk=run.pk).update(progress=fraction, message=message)


def _excluded_confirmed(detector: Detector, frame: pd.DataFrame) -> pd.DataFrame:
    """Confirmed incidents stay out of training: the model must not learn them as normal."""
    confirmed = Anomaly.objects.filter(series=detector.series, feedback=Feedback.CONFIRMED).values_list("ts", flat=True)
    stamps = {int(ts.timestamp() * 1e9) for ts in confirmed}
    return frame[~frame["ts"].isin(stamps)] if stamps else frame


class _Heartbeat:
    """Bumps the run's heartbeat_at from a thread while the worker trains (fits can take many
    minutes between progress updates), so a live run is never mistaken for an orphan."""

    def __init__(self, run_id: int):
        self.run_id, self.stop = run_id, threading.Event()
        self.thread = threading.Thread(target=self._beat, name=f"training-heartbeat-{run_id}", daemon=True)

    def _beat(self):
        from django.db import connection

        try:
            while not self.stop.wait(TRAINING_HEARTBEAT.total_seconds()):
                TrainingRun.objects.filter(pk=self.run_id, status="running").update(heartbeat_at=timezone.now())
        finally:
            connection.close()  # this thread's own connection

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)


def run_training(run_id: int, organization_id: int) -> TrainingRun | None:
    """Trains one queued run. Idempotent: only the worker whose update claims the run trains it
    (a run whose worker died is put back to queued by release_orphaned_training)."""
    now = timezone.now()
    claimed = TrainingRun.objects.filter(pk=run_id, organization_id=organization_id, status="queued").update(
        status="running", started_at=now, heartbeat_at=now, progress=0.01, message="loading history")
    if not claimed:
        return None
    run = TrainingRun.objects.select_related("detector__series", "detector__benchmark").get(pk=run_id)
    detector = run.detector
    try:
        Detector.objects.filter(pk=detector.pk).update(status=DetectorStatus.TRAINING)
        with _Heartbeat(run.pk):
            version = _train(run, detector)
    except (ValueError, KeyError, ArtifactError) as exc:
        logger.warning("training run %s of detector %s failed: %s", run.pk, detector.pk, exc)
        TrainingRun.objects.filter(pk=run.pk).update(status="failed", message=str(exc)[:2000],
                                                     finished_at=timezone.now())
        has_model = ModelVersion.objects.filter(detector=detector, active=True).exists()
        Detector.objects.filter(pk=detector.pk).update(
            status=DetectorStatus.READY if has_model else DetectorStatus.FAILED)
        return TrainingRun.objects.get(pk=run.pk)
    return version


def _train(run: TrainingRun, detector: Detector) -> TrainingRun:
    series = detector.series
    end = run.end or (series.last_point_at + timedelta(microseconds=1) if series.last_point_at else timezone.now())
    start = run.start or end - DEFAULT_TRAINING_WINDOW
    frame = _excluded_confirmed(detector, detector_frame(detector, to_us(start), to_us(end)))
    model = build(detector)
    needed = max(int(getattr(model, "min_history", 0)) * 2, 50)
    if len(frame) < needed:
        raise ValueError(f"Not enough history to train: {len(frame)} points in the window, {needed} needed. "
                         "Ingest or backfill more data, or widen the window.")
    split = int(len(frame) * (1 - VALIDATION_FRACTION))
    _progress(run, 0.1, f"fitting on {split} points")
    t0 = time.perf_counter()
    report = model.fit(frame.iloc[:split])
    _progress(run, 0.8, "validating")
    validation = _validation(model, frame.iloc[split:], report)
    reference = _active_loss(detector, frame.iloc[split:]) if run.reason == TrainingRun.Reason.REFIT else None
    artifact = model.to_bytes(include_state=False)
    baseline = _baseline(frame.iloc[:split])
    seconds = time.perf_counter() - t0
    _progress(run, 0.95, "saving")
    with transaction.atomic():
        Detector.objects.select_for_update().get(pk=detector.pk)
        if not TrainingRun.objects.filter(pk=run.pk, status="running", started_at=run.started_at).exists():
            # Another worker took this run over while this one looked dead: its result wins.
            logger.warning("training run %s was taken over by another worker; dropping this result", run.pk)
            return TrainingRun.objects.get(pk=run.pk)
        active = ModelVersion.objects.filter(detector=detector, active=True).first()
        number = (ModelVersion.objects.filter(detector=detector).aggregate(n=Max("version"))["n"] or 0) + 1
        if reference is None and active is not None:
            reference = active.validation.get("loss", float("inf"))
        better = active is None or detector.needs_retraining or validation["loss"] <= reference * ACTIVATION_TOLERANCE
        if better and active:
            ModelVersion.objects.filter(pk=active.pk).update(active=False)
        version = ModelVersion.objects.create(
            organization_id=detector.organization_id, detector=detector, version=number, params=model.params,
            train_start=from_us(int(frame["ts"].iloc[0]) // 1000), train_end=from_us(int(frame["ts"].iloc[split - 1]) // 1000),
            train_points=split, validation=validation, baseline=baseline, artifact=artifact, active=better,
            training_seconds=seconds)
        if better:
            # The streaming state restarts with the new model: the pipeline warms it on recent data.
            Detector.objects.filter(pk=detector.pk).update(status=DetectorStatus.READY, needs_retraining=False,
                                                           stream_state=None, stream_version=None)
        else:
            Detector.objects.filter(pk=detector.pk).update(status=DetectorStatus.READY)
        TrainingRun.objects.filter(pk=run.pk).update(
            status="succeeded" if better else "rejected", progress=1.0, model_version=version,
            finished_at=timezone.now(),
            message=f"v{number} {'activated' if better else 'kept inactive: validation worse than active'}; "
                    f"validation loss {validation['loss']:.4g}")
    return TrainingRun.objects.get(pk=run.pk)


def _active_loss(detector: Detector, holdout: pd.DataFrame) -> float | None:
    """The active model's loss on the new model's holdout. A refit is judged against what runs now
    on the same recent points: the active model's own holdout predates the change it must learn."""
    version = ModelVersion.objects.filter(detector=detector, active=True).only("artifact").first()
    if version is None:
        return None
    return _validation(load_detector(bytes(version.artifact)), holdout, {})["loss"]


def _validation(model, holdout: pd.DataFrame, report: dict) -> dict:
    """Scores the held-out 5 % causally after training. loss: the forecast error scaled by the
    series' typical move where the detector forecasts; else the alarm rate's distance from the
    calibrated rate. Lower is better, comparable between versions of one detector."""
    result = model.score(holdout)
    alarm_rate = float(np.mean(result.is_anomaly)) if len(result) else 0.0
    out = {"points": len(holdout), "alarm_rate": alarm_rate,
           "report": {k: v for k, v in report.items() if isinstance(v, (int, float, str))}}
    expected = np.asarray(result.expected, dtype=float)
    actual = holdout["value"].to_numpy(dtype=float)
    ok = np.isfinite(expected) & np.isfinite(actual)
    if ok.sum() >= 10:
        scale = np.median(np.abs(np.diff(actual[ok]))) or 1.0
        out["mae_scaled"] = float(np.mean(np.abs(expected[ok] - actual[ok])) / scale)
        out["loss"] = out["mae_scaled"]
    else:
        out["loss"] = abs(alarm_rate - (1 - model.params.get("calibration_quantile", 0.99)))
    return out


# Price levels wander: 90 days of them against the last day always "drift" (PSI 7 right after
# training). Drift compares their one-step relative changes instead, which are stationary.
LEVEL_COLUMNS = ("value", "vwap_5m", "vwap_15m")
RETURNS_KEY = "_returns"  # baseline entry naming the columns stored as changes (older models: none)


def _drift_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns drift compares: levels as relative changes, the rest as they are."""
    columns = [c for c in ("value", "volume", *FEATURE_COLUMNS) if c in frame.columns]
    out = frame[columns].astype(float)
    for c in LEVEL_COLUMNS:
        if c in out.columns:
            out[c] = out[c].pct_change()
    return out


def _baseline(frame: pd.DataFrame) -> dict:
    inputs = _drift_inputs(frame)
    step = max(1, len(frame) // BASELINE_SAMPLE)
    baseline = {c: [float(x) for x in inputs[c].to_numpy()[::step] if np.isfinite(x)] for c in inputs.columns}
    baseline[RETURNS_KEY] = [c for c in LEVEL_COLUMNS if c in inputs.columns]
    return baseline


def activate_version(*, actor: Actor, version: ModelVersion) -> ModelVersion:
    """Re-activates an older (or rejected) version by hand."""
    actor.require("change")
    with transaction.atomic():
        Detector.objects.select_for_update().get(pk=version.detector_id)
        ModelVersion.objects.filter(detector_id=version.detector_id, active=True).update(active=False)
        ModelVersion.objects.filter(pk=version.pk).update(active=True)
        Detector.objects.filter(pk=version.detector_id).update(stream_state=None, stream_version=None,
                                                               status=DetectorStatus.READY)
    version.refresh_from_db()
    return version


@lru_cache(maxsize=64)
def _loaded(version_pk: int, created: float):
    """Trained models, cached per worker by version (artifacts are immutable)."""
    return load_detector(bytes(ModelVersion.objects.values_list("artifact", flat=True).get(pk=version_pk)))


def active_model(detector: Detector):
    """(ModelVersion, a detector object ready to score with its streaming state), or (None, None)."""
    version = ModelVersion.objects.filter(detector=detector, active=True).only("pk", "version", "created_at").first()
    if version is None:
        return None, None
    model = _loaded(version.pk, version.created_at.timestamp())
    model.reset_state()
    if detector.stream_state and detector.stream_version == version.version:
        model.load_state(bytes(detector.stream_state))
    return version, model


def drift(detector: Detector) -> dict:
    """PSI of each input between the active model's training window and the last day of data."""
    version = ModelVersion.objects.filter(detector=detector, active=True).first()
    if version is None or detector.series.last_point_at is None:
        return {"status": "no active model or no data", "features": {}}
    end = detector.series.last_point_at + timedelta(microseconds=1)
    recent = _drift_inputs(detector_frame(detector, to_us(end - timedelta(days=1)), to_us(end)))
    as_changes = set(version.baseline.get(RETURNS_KEY, []))
    # A baseline from before changes were stored holds raw levels: those are not comparable, skip them.
    stored = {k: v for k, v in version.baseline.items() if k != RETURNS_KEY
              and (k in as_changes or k not in LEVEL_COLUMNS)}
    train = pd.DataFrame({k: pd.Series(v, dtype=float) for k, v in stored.items()})
    columns = [c for c in train.columns if c in recent.columns]
    table = psi_table(train[columns], recent[columns]) if len(recent) else {}
    # An infinite PSI (a bin empty on one side) is drift; NaN (no data) is not. JSON carries neither.
    drifted = sorted(set(drifted_features({k: v for k, v in table.items() if np.isfinite(v)}, DRIFT_THRESHOLD))
                     | {k for k, v in table.items() if np.isinf(v)})
    table = {k: (float(v) if np.isfinite(v) else None) for k, v in table.items()}
    if drifted and not detector.needs_retraining:
        Detector.objects.filter(pk=detector.pk).update(needs_retraining=True)
    return {"model_version": version.version, "features": table, "drifted": drifted, "threshold": DRIFT_THRESHOLD,
            "note": "features: PSI per input; null = undefined (infinite PSI counts as drifted)",
            "needs_retraining": bool(drifted) or detector.needs_retraining}


def precision(anomalies) -> dict:
    """Precision from users' labels: confirmed and new_trend count as right, false_alarm and
    expected (a real but unremarkable move) as noise."""
    counts = dict(anomalies.exclude(feedback="").values_list("feedback").annotate(n=Count("pk")))
    good = counts.get(Feedback.CONFIRMED, 0) + counts.get(Feedback.NEW_TREND, 0)
    labelled = sum(counts.values())
    return {"labelled": labelled, "precision": (good / labelled) if labelled else None, "labels": counts}


def suggest_threshold(detector: Detector, target_precision: float = 0.8) -> dict:
    """The lowest threshold whose labelled anomalies reach the target precision — computed from the
    stored scores, no retraining."""
    rows = list(Anomaly.objects.filter(detector=detector).exclude(feedback="").exclude(score=None)
                .values_list("score", "feedback"))
    if not rows:
        return {"threshold": detector.threshold, "reason": "no labelled anomalies yet"}
    good = {Feedback.CONFIRMED, Feedback.NEW_TREND}
    for candidate in sorted({s for s, _ in rows}):
        kept = [(s, f) for s, f in rows if s >= candidate]
        hits = sum(f in good for _, f in kept)
        if kept and hits / len(kept) >= target_precision:
            return {"threshold": candidate, "precision": hits / len(kept), "kept": len(kept), "labelled": len(rows)}
    return {"threshold": None, "reason": f"no threshold reaches precision {target_precision}", "labelled": len(rows)}


def release_orphaned_training(stale_after: timedelta = TRAINING_STALE_AFTER,
                              lost_after: timedelta = TRAINING_LOST_AFTER) -> tuple[list[int], list[TrainingRun]]:
    """(runs put back to queued because their worker stopped beating — SIGKILL, OOM, lost host —,
    runs to queue again: those, and queued ones whose task message may be lost, e.g. a Redis restart)."""
    now = timezone.now()
    since = now - stale_after
    dead = Q(status="running") & (Q(heartbeat_at__lt=since) | Q(heartbeat_at__isnull=True, started_at__lt=since))
    released = []
    for run in TrainingRun.objects.filter(dead).only("pk", "started_at"):
        # Conditional on the same claim: a worker that just beat again keeps its run.
        if TrainingRun.objects.filter(dead, pk=run.pk, started_at=run.started_at).update(
                status="queued", message="queued again: the worker training it stopped"):
            released.append(run.pk)
    lost = Q(status="queued", created_at__lt=now - lost_after)
    return released, list(TrainingRun.objects.filter(lost | Q(pk__in=released)).only("pk", "organization_id"))


def training_candidates():
    """Detectors due for nightly training: drifted or flagged, or no model trained in a week."""
    week_ago = timezone.now() - timedelta(days=7)
    return Detector.objects.filter(enabled=True).filter(
        Q(needs_retraining=True) | ~Q(versions__created_at__gte=week_ago)).distinct()


__all__ = ["DETECTORS"]
