"""Scheduled refit: learned detectors (isolation forest, LSTM) retrain on their series' recent data.

A model fitted once judges every later point by the history it saw then, so a series that moved
to a new regime (a new level with a new spread, a busier service) stays anomalous forever. Every
DETECTOR_REFIT_HOURS each enabled learned detector with an active model and newer points is
trained again on its last DETECTOR_REFIT_WINDOW_DAYS of data, as an ordinary training run
(reason "refit", with the run's progress like any training). The new version becomes active when
its loss on the recent holdout is no worse than the active model's on the same points
(detectors._active_loss); either way every older version stays in the registry.

Fairness between organizations: an organization has at most ORG_MAX_REFITS refits queued or
running at once. The beat task tops every organization up to that cap, and a finished refit tops
its own organization up again, so one organization with thousands of detectors takes turns on the
train queue with the others instead of filling it.

Idempotent: what is due is read from the data (the newest version's age, open runs, a refit
tried within the interval), and request_training returns a detector's open run instead of
queueing a second one, so the beat task may run late, twice or concurrently without training
anything twice. The cap is counted without a lock: two sweeps at the same moment may together
queue more than it for one organization, once.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count, Exists, F, Max, OuterRef, QuerySet
from django.utils import timezone

from accounts.tenancy import system_actor

from ..models import Detector, ModelVersion, TrainingRun
from .detectors import request_training

REFIT_KINDS = ("isolation_forest", "lstm_forecast")
OPEN = (TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING)


def due(now: datetime | None = None) -> QuerySet[Detector]:
    """Enabled learned detectors whose newest version is older than DETECTOR_REFIT_HOURS, whose
    series has points after that version's training window, with no training open and no refit
    tried within the interval (a refit that failed waits for the next one, not the next sweep)."""
    cutoff = (now or timezone.now()) - timedelta(hours=settings.DETECTOR_REFIT_HOURS)
    runs = TrainingRun.objects.filter(detector=OuterRef("pk"))
    return (Detector.objects.filter(enabled=True, kind__in=REFIT_KINDS)
            .filter(Exists(ModelVersion.objects.filter(detector=OuterRef("pk"), active=True)))
            .exclude(Exists(runs.filter(status__in=OPEN)))
            .exclude(Exists(runs.filter(reason=TrainingRun.Reason.REFIT, created_at__gte=cutoff)))
            .annotate(newest=Max("versions__created_at"), trained_to=Max("versions__train_end"))
            .filter(newest__lt=cutoff, series__last_point_at__gt=F("trained_to")))


def request_refit(detector: Detector) -> TrainingRun:
    """Queues a refit of one detector on its last DETECTOR_REFIT_WINDOW_DAYS of points (or returns
    the training already open for it)."""
    end = detector.series.last_point_at + timedelta(microseconds=1)
    start = end - timedelta(days=settings.DETECTOR_REFIT_WINDOW_DAYS)
    return request_training(actor=system_actor(detector.organization_id), detector=detector, start=start, end=end,
                            reason=TrainingRun.Reason.REFIT)


def request_refits(*, organization_id: int | None = None, now: datetime | None = None) -> list[TrainingRun]:
    """Queues the due refits of every organization (or of one), at most ORG_MAX_REFITS open per
    organization, oldest model first. Returns the runs queued. System work: no actor checks."""
    cap = settings.ORG_MAX_REFITS
    busy = TrainingRun.objects.filter(reason=TrainingRun.Reason.REFIT, status__in=OPEN)
    candidates = due(now)
    if organization_id is not None:
        busy, candidates = busy.filter(organization_id=organization_id), candidates.filter(
            organization_id=organization_id)
    open_refits = dict(busy.values_list("organization_id").annotate(n=Count("pk")).order_by())
    runs = []
    for detector in candidates.select_related("series").order_by("organization_id", "newest", "pk"):
        org = detector.organization_id
        if open_refits.get(org, 0) >= cap:
            continue
        open_refits[org] = open_refits.get(org, 0) + 1
        runs.append(request_refit(detector))
    return runs
