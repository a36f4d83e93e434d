"""Detect-queue tasks. Arguments are ids; every task is idempotent (see detection.pipeline)."""

from celery import shared_task
from django.conf import settings
from django.core.cache import cache

from watchlists import pending

from . import pipeline
from .models import DetectionCursor


def enqueue(organization_id: int) -> None:
    """Wakes the organization's detection run for the work ingest queued (watchlists.pending):
    bursts of batches coalesce into one run that reads everything new."""
    pending.wake(pending.DETECT, organization_id, lambda: run_pending.delay(organization_id))


@shared_task(name="detection.run", acks_late=True)
def run_detection(series_id: int, organization_id: int) -> int:
    """Streams a series' new points through its rules (the sweep queues these)."""
    return pipeline.run_series(series_id, organization_id)


@shared_task(name="detection.run_pending", acks_late=True)
def run_pending(organization_id: int) -> int:
    """Streams the new points of every series with detection work queued for the organization
    through their rules, in one pass. Each chunk takes its series' queued rows in its own
    transaction (pipeline), so a run that fails or dies leaves them for the next.

    Runs at most DETECTION_CHUNKS_PER_TASK chunks, then queues the rest (a row per series, from
    where its cursor stands) and wakes a new run at the back of the queue: one organization's
    backlog takes turns with the others' instead of holding a worker. A run lost between the two
    leaves series behind their cursors: the sweep finds those."""
    pending.woken(pending.DETECT, organization_id)
    series_ids = pending.waiting(pending.DETECT, organization_id)
    if not series_ids:
        return 0
    written, more = pipeline.run_some(series_ids, organization_id, settings.DETECTION_CHUNKS_PER_TASK)
    if more:
        pending.add(organization_id, _from_cursors(more, organization_id), purposes=(pending.DETECT,))
        enqueue(organization_id)
    return written


def _from_cursors(series_ids: list[int], organization_id: int) -> dict[int, tuple[int, int]]:
    """{series id: (µs, µs)} just after each series' cursor: more to read there, nothing late (a
    span after the cursor makes no replay)."""
    cursors = DetectionCursor.objects.filter(series_id__in=series_ids, organization_id=organization_id)
    return {series_id: (after, after) for series_id, last in cursors.values_list("series_id", "last_msg_id")
            for after in [last // pipeline.RANK_BITS + 1 if last >= 0 else 0]}


@shared_task(name="detection.sweep")
def sweep() -> int:
    """Queues a run for every series whose stored points are ahead of its detection cursor, and
    publishes anomalies that were committed but never announced.

    Recovers series whose run died with its worker (that task's message stays invisible until
    the broker's visibility timeout) or whose wake-up was lost with Redis: their queued work or
    their points ahead of the cursor (pipeline.stale_series)."""
    from .live import publish_unpublished

    publish_unpublished()
    requeue_orphaned_training()
    requeue_stale_history()
    stale = pipeline.stale_series()
    for series_id, organization_id in stale:
        run_detection.delay(series_id, organization_id)
    return len(stale)


def requeue_orphaned_training(**kwargs) -> int:
    """Training runs whose worker died (or whose message was lost) are queued again; the claim in
    run_training lets only one worker take each. A run waiting in the queue is re-sent at most once
    per TRAINING_LOST_AFTER, so one stuck behind a long training does not pile up copies."""
    from .services.detectors import TRAINING_LOST_AFTER, release_orphaned_training

    queued = 0
    released, runs = release_orphaned_training(**kwargs)
    for run in runs:
        guard = f"train:requeued:{run.pk}"
        if run.pk in released or cache.add(guard, 1, timeout=int(TRAINING_LOST_AFTER.total_seconds())):
            train_detector.delay(run.pk, run.organization_id)
            queued += 1
    return queued


@shared_task(name="detection.train", acks_late=True, soft_time_limit=1800, time_limit=1900)
def train_detector(run_id: int, organization_id: int) -> None:
    """Trains one queued run (train queue). Idempotent: a re-delivered task finds the run claimed."""
    from .services.detectors import run_training
    from .services.refit import request_refits

    run = run_training(run_id, organization_id)
    if run is not None and run.reason == run.Reason.REFIT:
        request_refits(organization_id=organization_id)  # the organization's next refit takes this one's turn


@shared_task(name="detection.refit_due")
def refit_due() -> int:
    """Queues the scheduled refits of learned detectors (beat, every DETECTOR_REFIT_SWEEP_SECONDS);
    idempotent, see detection.services.refit."""
    from .services.refit import request_refits

    return len(request_refits())


@shared_task(name="detection.train_nightly")
def train_nightly() -> int:
    """Queues training for drifted, flagged or week-old detectors (beat, after the daily import)."""
    from accounts.tenancy import system_actor

    from .services.detectors import request_training, training_candidates

    queued = 0
    for detector in training_candidates().select_related("series"):
        request_training(actor=system_actor(detector.organization_id), detector=detector)
        queued += 1
    return queued


def requeue_stale_history() -> int:
    """History runs whose worker died mid-run (or whose message was lost) get a new task; the run's
    row lock and its committed cursor make a second task for a live run harmless."""
    from .services.history import stale_runs

    runs = stale_runs()
    for run_id, organization_id in runs:
        run_history.delay(run_id, organization_id)
    return len(runs)


@shared_task(name="detection.history", acks_late=True)
def run_history(run_id: int, organization_id: int) -> str:
    """Works a history run for HISTORY_TASK_SECONDS at most (train queue), then queues the rest,
    so one long history never holds a worker; a run waiting for its training checks again soon."""
    from .services.history import work

    state = work(run_id, organization_id)
    if state == "more":
        run_history.delay(run_id, organization_id)
    elif state == "waiting" and not run_history.app.conf.task_always_eager:  # eager: the sweep retries
        run_history.apply_async((run_id, organization_id), countdown=3)
    return state
