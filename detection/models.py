"""Rules, their per-series engine state, the detection cursor, and anomalies."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.querysets import TenantModel
from watchlists.models import Series, Watchlist


class Severity(models.TextChoices):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class Rule(TenantModel):
    """DolphinDB-style metrics watching one series or every series of a watchlist.

    window_size and step are in milliseconds (the time column is a millisecond TIMESTAMP); each
    series is one key of the engine."""

    name = models.CharField(max_length=120)
    metrics = models.TextField(help_text="one or more boolean metrics separated by ';'")
    window_size = models.PositiveBigIntegerField(null=True, blank=True)
    step = models.PositiveBigIntegerField(null=True, blank=True)
    round_time = models.BooleanField(default=True)
    series = models.ForeignKey(Series, null=True, blank=True, on_delete=models.CASCADE, related_name="rules")
    watchlist = models.ForeignKey(Watchlist, null=True, blank=True, on_delete=models.CASCADE, related_name="rules")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    enabled = models.BooleanField(default=True)
    # Time (ms) of the first point the rule ever saw: aligns every series' windows identically.
    origin_time_ms = models.BigIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(
            condition=(Q(series__isnull=False) & Q(watchlist__isnull=True))
            | (Q(series__isnull=True) & Q(watchlist__isnull=False)), name="rule_watches_one_target")]

    def __str__(self):
        return self.name


class RuleState(TenantModel):
    """The engine snapshot of one rule on one series, with the last message it includes."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="states")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="+")
    snapshot = models.BinaryField(null=True)
    snapshot_msg_id = models.BigIntegerField(default=-1)
    snapshot_at = models.DateTimeField(null=True)
    stats = models.JSONField(default=dict)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["rule", "series"], name="uniq_rule_state")]

    def __str__(self):
        return f"rule {self.rule_id} on series {self.series_id}"


class DetectionCursor(TenantModel):
    """How far the streaming pipeline has read a series: every message id <= last_msg_id is done."""

    series = models.OneToOneField(Series, on_delete=models.CASCADE, related_name="detection_cursor")
    last_msg_id = models.BigIntegerField(default=-1)
    # The time of the last point read (last_msg_id's), written with it: the detection sweep finds
    # the series behind their cursor by comparing it with Series.last_point_at. NULL: not read yet.
    read_to = models.DateTimeField(null=True, blank=True)
    # Set when late points made the stream replay (pipeline._rewind): the replay starts some way
    # before them with fresh engines, and its outputs before this time (µs UTC) are dropped, as
    # the first stream already judged those with the full history.
    replay_from_us = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"cursor of series {self.series_id} at {self.last_msg_id}"


class Feedback(models.TextChoices):
    CONFIRMED = "confirmed"
    EXPECTED = "expected"
    FALSE_ALARM = "false_alarm"
    NEW_TREND = "new_trend"


class Anomaly(TenantModel):
    """One anomaly, written once: unique on (series, ts, source, metric)."""

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="anomalies")
    ts = models.DateTimeField()
    # "rule:<id>" or "detector:<id>": what produced it.
    source = models.CharField(max_length=40)
    rule = models.ForeignKey(Rule, null=True, blank=True, on_delete=models.SET_NULL, related_name="anomalies")
    detector = models.ForeignKey("Detector", null=True, blank=True, on_delete=models.SET_NULL,
                                 related_name="anomalies")
    metric_index = models.IntegerField(default=0)
    text = models.CharField(max_length=2000, help_text="the metric that fired, or the detector's explanation")
    observed = models.JSONField(default=dict)
    expected = models.JSONField(default=dict, blank=True)
    score = models.FloatField(null=True, blank=True)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    model_version = models.CharField(max_length=40, blank=True, default="")
    feedback = models.CharField(max_length=16, choices=Feedback.choices, blank=True, default="")
    feedback_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                    related_name="+")
    feedback_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # Outbox for the live feed: set once the anomaly was published; the sweep republishes rows a
    # crashed worker committed but never announced (at-least-once; clients dedupe by id).
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "ts", "source", "metric_index"],
                                               name="uniq_anomaly")]
        indexes = [models.Index(fields=["organization", "-ts"]), models.Index(fields=["series", "-ts"]),
                   models.Index(fields=["created_at"], condition=Q(published_at__isnull=True),
                                name="anomaly_unpublished"),
                   # alerts.sweep's lost-dispatch check reads the last minutes by it.
                   models.Index(fields=["created_at"], name="anomaly_created")]
        verbose_name_plural = "anomalies"

    def __str__(self):
        return f"{self.series_id}@{self.ts:%Y-%m-%d %H:%M:%S} {self.text}"


class DetectorStatus(models.TextChoices):
    UNTRAINED = "untrained"
    TRAINING = "training"
    READY = "ready"
    FAILED = "failed"


class Detector(TenantModel):
    """A learned detector on one series. Its trained models are ModelVersion rows (in the DB)."""

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="detectors")
    kind = models.CharField(max_length=40, help_text="robust_zscore | isolation_forest | lstm_forecast | ensemble")
    params = models.JSONField(default=dict, blank=True)
    # Market-relative scoring: moves are judged relative to this series (e.g. SPY).
    benchmark = models.ForeignKey(Series, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    threshold = models.FloatField(default=0.5, help_text="anomaly when score >= threshold (0.5 = as calibrated)")
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.MEDIUM)
    enabled = models.BooleanField(default=True)
    status = models.CharField(max_length=12, choices=DetectorStatus.choices, default=DetectorStatus.UNTRAINED)
    needs_retraining = models.BooleanField(default=False)
    # Streaming state of the active model (rolling buffers), continued batch after batch.
    stream_state = models.BinaryField(null=True, blank=True)
    stream_version = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"{self.kind} on {self.series_id}"


class ModelVersion(TenantModel):
    """One trained model: stored in the database with its training window and validation."""

    detector = models.ForeignKey(Detector, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    params = models.JSONField(default=dict)
    train_start = models.DateTimeField()
    train_end = models.DateTimeField()
    train_points = models.PositiveIntegerField()
    validation = models.JSONField(default=dict)
    # Per-feature quantile bins and proportions of the training window, for drift (PSI).
    baseline = models.JSONField(default=dict)
    artifact = models.BinaryField()
    active = models.BooleanField(default=False)
    training_seconds = models.FloatField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["detector", "version"], name="uniq_model_version"),
            models.UniqueConstraint(fields=["detector"], condition=Q(active=True), name="one_active_model"),
        ]

    def __str__(self):
        return f"{self.detector_id} v{self.version}"


class TrainingRun(TenantModel):
    """A request to train a detector, claimed atomically by one worker (queued -> running)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        REJECTED = "rejected"  # trained, but validation was worse than the active model's
        FAILED = "failed"

    class Reason(models.TextChoices):
        REQUESTED = "requested"  # a person or the nightly schedule asked
        REFIT = "refit"  # scheduled refit on recent data (detection.services.refit)

    detector = models.ForeignKey(Detector, on_delete=models.CASCADE, related_name="runs")
    reason = models.CharField(max_length=10, choices=Reason.choices, default=Reason.REQUESTED)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    progress = models.FloatField(default=0)
    message = models.TextField(blank=True, default="")
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL,
                                      related_name="+")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Bumped while a worker trains; a running run whose heartbeat stopped lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"training {self.pk} of detector {self.detector_id}: {self.status}"


class HistoryRun(TenantModel):
    """One rule's or detector's pass over a series' stored history (detection.services.history).

    Covers the points in [start_us, end_us]: end is where live detection's cursor stood when the
    run was asked for, so the live pipeline takes every later point and nothing is seen twice.
    Each chunk commits its anomalies, the engine snapshot and cursor_us (the last time it
    includes) together, like live detection: a worker killed mid-chunk loses only that chunk."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        SUPERSEDED = "superseded"  # the rule or detector changed, or a newer run took its place

    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="history_runs")
    rule = models.ForeignKey(Rule, null=True, blank=True, on_delete=models.CASCADE, related_name="history_runs")
    detector = models.ForeignKey(Detector, null=True, blank=True, on_delete=models.CASCADE,
                                 related_name="history_runs")
    # A detector's run waits for this training to finish, then scores with the model it produced.
    training_run = models.ForeignKey(TrainingRun, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # The model a detector's run scores with, fixed at its first chunk (its snapshot is that model's state).
    model_version = models.ForeignKey(ModelVersion, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.QUEUED)
    start_us = models.BigIntegerField()
    end_us = models.BigIntegerField()
    cursor_us = models.BigIntegerField(default=-1, help_text="every point at or before this time is done")
    snapshot = models.BinaryField(null=True, blank=True)
    points_total = models.BigIntegerField(default=0)
    points_done = models.BigIntegerField(default=0)
    anomalies_found = models.IntegerField(default=0)
    message = models.TextField(blank=True, default="")
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Bumped by every committed chunk; a running run whose heartbeat stopped lost its worker.
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.CheckConstraint(
            condition=Q(rule__isnull=False, detector__isnull=True) | Q(rule__isnull=True, detector__isnull=False),
            name="history_run_one_source")]
        indexes = [models.Index(fields=["status", "heartbeat_at"], name="history_run_status")]

    @property
    def progress(self) -> float:
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        return min(1.0, self.points_done / self.points_total) if self.points_total else 0.0

    @property
    def source(self) -> str:
        return f"rule:{self.rule_id}" if self.rule_id else f"detector:{self.detector_id}"

    def __str__(self):
        return f"history of {self.source} on series {self.series_id}: {self.status}"
