"""History runs: a rule or a trained detector over the points a series already stored.

Live detection reads each series from its cursor on, so a rule created after an import would
never see the imported points. A history run covers what the live cursor had passed when the run
was asked for, [start, cursor]; live detection takes every later point. The cursor row is locked
while the bound is read (the transaction that saves the rule), so a live chunk in flight either
committed before (its points are history's) or starts after and sees the new rule.

Same discipline as live detection: each chunk of HISTORY_CHUNK_POINTS points commits its
anomalies (written once by the unique key), the engine or model snapshot and the run's cursor in
one transaction, under the run's row lock. A worker killed mid-chunk loses that chunk only; the
next task (re-delivery, or the sweep after HISTORY_STALE_SECONDS) resumes from the snapshot.
A task works at most HISTORY_TASK_SECONDS, then queues its continuation (bounded per call).

Idempotent: re-running with the same start finds the same anomalies and stores none twice. A
changed rule (or retrained detector) replaces its own unlabelled anomalies in the span; labelled
ones are people's judgement and stay."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.tenancy import Actor
from anomalyhub.lib.errors import InvalidError
from watchlists.models import Series
from watchlists.store import reader
from watchlists.store.timeconv import from_us, to_us

from .. import pipeline
from ..detectors import load_detector
from ..models import Anomaly, DetectionCursor, Detector, HistoryRun, ModelVersion, Rule, TrainingRun
from ..rules import RuleEngine
from . import detectors as detector_services
from . import rules as rule_services
from .rules import align, plan_for, series_batch, target_series

logger = logging.getLogger(__name__)
Status = HistoryRun.Status
OPEN = (Status.QUEUED, Status.RUNNING)


def chunk_points() -> int:
    return getattr(settings, "HISTORY_CHUNK_POINTS", 10_000)


def task_seconds() -> float:
    return getattr(settings, "HISTORY_TASK_SECONDS", 20)


def stale_seconds() -> float:
    return getattr(settings, "HISTORY_STALE_SECONDS", 60)


class HistoryInvalid(InvalidError):
    code = "invalid_history_run"


# -- asking for runs ---------------------------------------------------------------------------

def save_rule(*, actor: Actor, data: rule_services.RuleInput, rule: Rule | None = None, run_on_history: bool = False,
              start: datetime | None = None) -> Rule:
    """Saves a rule and, when asked, queues its history runs in the same transaction (the runs'
    bound is read under the live cursor's lock: see the module doc). A changed definition
    replaces the rule's own history anomalies. The runs are on rule.queued_history_runs."""
    with transaction.atomic():
        before = rule_services.definition(rule) if rule else None
        rule = rule_services.save_rule(actor=actor, data=data, rule=rule)
        changed = before is not None and before != rule_services.definition(rule)
        rule.queued_history_runs = request_for_rule(actor=actor, rule=rule, start=start, replace=changed) \
            if run_on_history else []
    return rule


def train(*, actor: Actor, detector: Detector, start: datetime | None = None, end: datetime | None = None,
          run_on_history: bool = False, history_start: datetime | None = None) -> TrainingRun:
    """Queues training and, when asked, a history run with the model it produces (which replaces
    the detector's own unlabelled anomalies in the span). The run is on training.history_run."""
    with transaction.atomic():
        training = detector_services.request_training(actor=actor, detector=detector, start=start, end=end)
        training.history_run = request_for_detector(actor=actor, detector=detector, start=history_start,
                                                    training_run=training, replace=True) if run_on_history else None
    return training


def request_for_rule(*, actor: Actor, rule: Rule, start: datetime | None = None, replace: bool = False,
                     series_list: list[Series] | None = None, end_us: int | None = None,
                     background: bool = True) -> list[HistoryRun]:
    """Queues a run of the rule over each of its series' history (one run per series).
    replace: the rule changed, so its unlabelled anomalies in the span go first. background=False:
    the caller works the runs itself (manage.py run_history)."""
    actor.require("change")
    with transaction.atomic():
        runs = [run for series in (series_list if series_list is not None else target_series(rule))
                if (run := _request(actor, series, start, end_us, replace, rule=rule)) is not None]
    if background:
        for run in runs:
            transaction.on_commit(lambda run=run: dispatch(run.pk, run.organization_id))
    return runs


def request_for_detector(*, actor: Actor, detector: Detector, start: datetime | None = None,
                         training_run: TrainingRun | None = None, replace: bool = False,
                         end_us: int | None = None, background: bool = True) -> HistoryRun | None:
    """Queues a run of the detector's active model (or of the model `training_run` produces,
    once it finishes) over the series' history."""
    actor.require("change")
    if training_run is None and not ModelVersion.objects.filter(detector=detector, active=True).exists():
        raise HistoryInvalid("This detector has no trained model yet: train it (with run_on_history) first.",
                             details={"detector": ["No active model."]})
    with transaction.atomic():
        run = _request(actor, detector.series, start, end_us, replace, detector=detector, training_run=training_run)
    if run is not None and background:
        transaction.on_commit(lambda: dispatch(run.pk, run.organization_id))
    return run


def _request(actor: Actor, series: Series, start: datetime | None, end_us: int | None, replace: bool,
             **source) -> HistoryRun | None:
    """One run on one series; None when live detection will see every point anyway."""
    cursor = DetectionCursor.objects.select_for_update().filter(series=series).first()
    live_from = cursor.last_msg_id // pipeline.RANK_BITS if cursor and cursor.last_msg_id >= 0 else -1
    bound = live_from if end_us is None else min(end_us, live_from)
    start_us = to_us(start) if start else 0
    if bound < 0 or bound < start_us:
        return None
    open_runs = HistoryRun.objects.filter(series=series, status__in=OPEN, **source)
    open_runs.update(status=Status.SUPERSEDED, finished_at=timezone.now(), message="replaced by a newer run")
    if replace:
        _forget(series, source, start_us, bound)
    run = HistoryRun.objects.create(organization_id=series.organization_id, series=series, start_us=start_us,
                                    end_us=bound, points_total=_count(series, start_us, bound),
                                    requested_by=actor.credited_user, **source)
    return run


def _forget(series: Series, source: dict, start_us: int, end_us: int) -> None:
    """Deletes the source's own unlabelled anomalies in the span (a changed rule replaces them)."""
    name = f"rule:{source['rule'].pk}" if source.get("rule") else f"detector:{source['detector'].pk}"
    Anomaly.objects.filter(series=series, source=name, feedback="", ts__gte=from_us(start_us),
                           ts__lte=from_us(end_us)).delete()


def _count(series: Series, start_us: int, end_us: int) -> int:
    """The points in the span: the run's progress is points_done of this."""
    return reader.count_raw(series.pk, series.kind, start_us, end_us)


def request_for_import(organization_id: int, series_id: int, start_us: int, end_us: int) -> list[HistoryRun]:
    """Points imported into a series that already had rules or detectors, older than where live
    detection stands: run those over the imported span (live detection takes the newer points)."""
    from accounts.tenancy import system_actor

    series = Series.objects.filter(pk=series_id, organization_id=organization_id).first()
    if series is None:
        return []
    actor = system_actor(organization_id)
    start = from_us(start_us)
    runs = []
    for rule in pipeline.rules_for(series):
        runs += request_for_rule(actor=actor, rule=rule, start=start, series_list=[series], end_us=end_us)
    for detector in Detector.objects.filter(series=series, enabled=True, versions__active=True):
        run = request_for_detector(actor=actor, detector=detector, start=start, end_us=end_us)
        runs += [run] if run else []
    return runs


# -- running them ------------------------------------------------------------------------------

def dispatch(run_id: int, organization_id: int) -> None:
    """Starts working a run: a Celery task, or in embedded mode (tasks run in-process) a thread,
    so the request that asked for it returns at once."""
    if settings.CELERY_TASK_ALWAYS_EAGER and getattr(settings, "EMBEDDED_BACKGROUND_THREADS", False):
        threading.Thread(target=_on_thread, args=(run_id, organization_id), daemon=True,
                         name=f"history-{run_id}").start()
        return
    from ..tasks import run_history

    run_history.delay(run_id, organization_id)


def _on_thread(run_id: int, organization_id: int) -> None:
    try:
        while (state := work(run_id, organization_id)) != "done":
            if state == "waiting":
                time.sleep(1)
    finally:
        close_old_connections()


def work(run_id: int, organization_id: int, seconds: float | None = None) -> str:
    """Works chunks of a run for at most `seconds`. Returns "done" (finished, failed or not
    there), "more" (time is up: queue the rest) or "waiting" (its training has not finished)."""
    deadline = time.monotonic() + (task_seconds() if seconds is None else seconds)
    while True:
        state = _chunk(run_id, organization_id)
        if state != "more" or time.monotonic() >= deadline:
            return state


@transaction.atomic
def _chunk(run_id: int, organization_id: int) -> str:
    run = (HistoryRun.objects.select_for_update(of=("self",))
           .select_related("series", "rule", "detector__series", "detector__benchmark", "training_run")
           .filter(pk=run_id, organization_id=organization_id).first())
    if run is None or run.status not in OPEN:
        return "done"
    try:
        if run.detector_id and not _model_ready(run):
            return "waiting" if run.status in OPEN else "done"
        return _advance(run)
    except ValueError as exc:  # a rule that no longer compiles for the series, bad model input
        logger.warning("history run %s failed: %s", run.pk, exc)
        _finish(run, Status.FAILED, str(exc)[:2000])
        return "done"


def _model_ready(run: HistoryRun) -> bool:
    """Pins the model a detector's run scores with, once its training (if any) is over."""
    if run.model_version_id:
        return True
    training = run.training_run
    if training is not None and training.status in (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING):
        return False
    version = ModelVersion.objects.filter(detector=run.detector, active=True).first()
    if version is None:
        _finish(run, Status.FAILED, f"no trained model to run: {training.message if training else 'train it first'}")
        return False
    run.model_version = version
    return True


def _advance(run: HistoryRun) -> str:
    """One chunk: reads the points after the run's cursor, runs them, commits everything at once."""
    series = run.series
    limit = chunk_points()
    ts_us, columns = series_batch(series, max(run.cursor_us + 1, run.start_us), run.end_us + 1,
                                  limit + pipeline.RANK_BITS)
    if not len(ts_us):
        _finish(run, Status.SUCCEEDED, f"{run.anomalies_found} anomalies in {run.points_done} points")
        return "done"
    take = pipeline.whole_timestamps(ts_us, limit)
    ts_us, columns = ts_us[:take], {k: v[:take] for k, v in columns.items()}
    runner = _run_rule if run.rule_id else _run_detector
    anomalies = runner(run, series, ts_us, columns)
    created = pipeline.write_anomalies(anomalies, run.organization_id)
    now = timezone.now()
    run.cursor_us = int(ts_us[-1])
    run.points_done += take
    run.anomalies_found += len(created)
    run.status = Status.RUNNING
    run.started_at = run.started_at or now
    run.heartbeat_at = now
    run.message = f"{run.points_done:,} of {run.points_total:,} points"
    run.save(update_fields=["cursor_us", "points_done", "anomalies_found", "status", "started_at", "heartbeat_at",
                            "message", "snapshot", "model_version"])
    return "more"


def _run_rule(run: HistoryRun, series: Series, ts_us, columns) -> list[Anomaly]:
    plan = plan_for(run.rule, [series])
    if run.snapshot:
        engine = RuleEngine.restore(plan, bytes(run.snapshot))
    else:
        engine = RuleEngine(plan)
        # Windows on the grid live detection uses when the span lies after its origin (an import of
        # newer points), else from the span's first point, as a backtest.
        first, origin = int(columns["time"][0]), run.rule.origin_time_ms
        align(engine, origin if origin is not None and origin <= first else first)
    outputs = engine.process(columns, pipeline.message_ids(ts_us))
    run.snapshot = engine.snapshot()
    return pipeline.rule_anomalies(run.rule, series, outputs)


def _run_detector(run: HistoryRun, series: Series, ts_us, columns) -> list[Anomaly]:
    detector, version = run.detector, run.model_version
    # A private copy of the model: the pipeline's cached one carries the live stream's state.
    model = load_detector(bytes(ModelVersion.objects.values_list("artifact", flat=True).get(pk=version.pk)))
    model.reset_state()
    if run.snapshot:
        model.load_state(bytes(run.snapshot))
    else:  # warm it on the points before the span, as the live pipeline does (no anomalies)
        before = reader.read_raw_before(series.pk, series.kind, int(ts_us[0]), model.min_history + 1)
        if len(before["ts"]):
            model.score(detector_services.detector_frame(detector, int(before["ts"][0]), int(ts_us[0]), data=before))
    data = {"ts": ts_us, **{k: v for k, v in columns.items() if k != "time"}}
    frame = detector_services.detector_frame(detector, int(ts_us[0]), int(ts_us[-1]) + 1, data=data)
    result = model.score(frame)
    run.snapshot = model.state_to_bytes()
    return pipeline.detector_anomalies(detector, series, version, frame, result, ts_us)


def _finish(run: HistoryRun, status: str, message: str) -> None:
    run.status, run.message, run.finished_at = status, message, timezone.now()
    if status == Status.SUCCEEDED:
        run.snapshot = None  # done: the state is no longer needed
    run.save(update_fields=["status", "message", "finished_at", "snapshot", "model_version"])


def stale_runs() -> list[tuple[int, int]]:
    """(run id, organization id) of open runs nobody is working: running with a stopped heartbeat
    (the worker died) or queued for longer than that (the message was lost)."""
    since = timezone.now() - timedelta(seconds=stale_seconds())
    stale = Q(status=Status.RUNNING, heartbeat_at__lt=since) | Q(status=Status.QUEUED, created_at__lt=since)
    return list(HistoryRun.objects.filter(stale).values_list("pk", "organization_id")[:1000])
