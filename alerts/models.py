"""Alert subscriptions, webhook endpoints, incidents, and the notification outbox with its attempts."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.querysets import TenantModel
from detection.models import Anomaly, Detector, Rule, Severity
from watchlists.models import Series, Watchlist


class Target(models.TextChoices):
    EVERYTHING = "everything"
    WATCHLIST = "watchlist"
    SERIES = "series"
    RULE = "rule"
    DETECTOR = "detector"


class Channel(models.TextChoices):
    EMAIL = "email"
    WEBHOOK = "webhook"


class QuietMode(models.TextChoices):
    HOLD = "hold", "held and sent when quiet hours end"
    DROP = "drop", "dropped"


class WebhookEndpoint(TenantModel):
    """A customer URL that receives signed notifications. Two secrets live side by side during a
    rotation: deliveries are signed with both until previous_secret_expires_at."""

    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True, default="")
    secret = models.CharField(max_length=100)
    previous_secret = models.CharField(max_length=100, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    # Consecutive failed attempts; reset by any success. Reaching the limit disables the endpoint.
    failure_count = models.PositiveIntegerField(default=0)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True, default="")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.url


class AlertSubscription(TenantModel):
    """What one user wants to hear about, through which channels, and how much noise to allow."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="alert_subscriptions")
    name = models.CharField(max_length=120, blank=True, default="")
    target = models.CharField(max_length=12, choices=Target.choices, default=Target.EVERYTHING)
    watchlist = models.ForeignKey(Watchlist, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    series = models.ForeignKey(Series, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    rule = models.ForeignKey(Rule, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    detector = models.ForeignKey(Detector, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    min_severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.LOW)
    channels = models.JSONField(default=list, help_text='["email"], ["webhook"] or both')
    webhook = models.ForeignKey(WebhookEndpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # Noise control. Windows are aligned to the epoch, so grouping does not depend on arrival order.
    cooldown_seconds = models.PositiveIntegerField(default=0, help_text="per series")
    group_window_seconds = models.PositiveIntegerField(default=0)
    incident_min_symbols = models.PositiveIntegerField(
        default=3, help_text="watchlist targets: this many symbols in one minute make one incident notification")
    quiet_start = models.TimeField(null=True, blank=True, help_text="local time in the user's time zone")
    quiet_end = models.TimeField(null=True, blank=True)
    quiet_mode = models.CharField(max_length=4, choices=QuietMode.choices, default=QuietMode.HOLD)
    snooze_until = models.DateTimeField(null=True, blank=True)
    session_only = models.BooleanField(default=False, help_text="only while the series' exchange is open")
    notify_resolution = models.BooleanField(default=False)
    resolve_after_seconds = models.PositiveIntegerField(default=300, help_text="quiet period that resolves an incident")
    flap_threshold = models.PositiveIntegerField(default=4, help_text="incident openings within flap_window = flapping")
    flap_window_seconds = models.PositiveIntegerField(default=3600)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["organization", "enabled"])]

    def __str__(self):
        return self.name or f"subscription {self.pk}"


class Incident(TenantModel):
    """Anomalies of one series for one subscription, from the first until a quiet period passes.

    The latest row per (subscription, series) also carries the cooldown clock and the recent
    openings used to detect flapping."""

    class Status(models.TextChoices):
        OPEN = "open"
        RESOLVED = "resolved"

    subscription = models.ForeignKey(AlertSubscription, on_delete=models.CASCADE, related_name="incidents")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OPEN)
    opened_at = models.DateTimeField()
    last_anomaly_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    anomaly_count = models.PositiveIntegerField(default=0)
    flapping = models.BooleanField(default=False)
    recent_opens = models.JSONField(default=list)
    last_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["subscription", "series", "opened_at"], name="uniq_incident")]
        indexes = [models.Index(fields=["status", "last_anomaly_at"])]

    def __str__(self):
        return f"incident {self.pk} of series {self.series_id} ({self.status})"


class Notification(TenantModel):
    """The outbox: one message to one destination. Written in the dispatch transaction, claimed by
    delivery with a conditional update, so a message is sent by one worker at a time."""

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    class Kind(models.TextChoices):
        ANOMALIES = "anomalies"
        RESOLVED = "resolved"
        FLAPPING = "flapping"
        TEST = "test"
        ENDPOINT_DISABLED = "endpoint_disabled"

    idempotency_key = models.CharField(max_length=200, unique=True)
    subscription = models.ForeignKey(AlertSubscription, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="notifications")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                             related_name="+")
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.ANOMALIES)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    endpoint = models.ForeignKey(WebhookEndpoint, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    email = models.EmailField(blank=True, default="")
    # The noise-control message this row delivers (several channels share one message key).
    message_key = models.CharField(max_length=160, blank=True, default="")
    # Open groups accept more anomalies until their (event-time) end while still pending.
    group_end = models.DateTimeField(null=True, blank=True)
    event_ts = models.DateTimeField(null=True, blank=True)
    anomaly_ids = models.JSONField(default=list)
    series_ids = models.JSONField(default=list)
    detail = models.JSONField(default=dict, blank=True)
    # Rendered once, at the first claim, so every retry sends the very same body.
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    due_at = models.DateTimeField()
    claimed_at = models.DateTimeField(null=True, blank=True)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.CharField(max_length=1000, blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    replay_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["organization", "-created_at"]),
            # The sweep's lookups: only unfinished rows, so the index stays small.
            models.Index(fields=["status", "due_at"], name="alerts_notif_unfinished",
                         condition=Q(status__in=["pending", "sending"])),
            models.Index(fields=["subscription", "status"]),
        ]

    def __str__(self):
        return f"{self.kind} via {self.channel} ({self.status})"


class DeliveryAttempt(TenantModel):
    """One try to hand a notification to SendGrid or a webhook receiver."""

    class Outcome(models.TextChoices):
        SUCCESS = "success"
        TRANSIENT = "transient"
        PERMANENT = "permanent"

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="delivery_attempts")
    number = models.PositiveIntegerField()
    outcome = models.CharField(max_length=10, choices=Outcome.choices)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.FloatField(default=0)
    response_excerpt = models.CharField(max_length=500, blank=True, default="")
    error = models.CharField(max_length=1000, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["notification", "number"], name="uniq_delivery_attempt")]

    def __str__(self):
        return f"attempt {self.number} of {self.notification_id}: {self.outcome}"


class DispatchedAnomaly(TenantModel):
    """Claims an anomaly for dispatch exactly once (inserted in the dispatch transaction)."""

    anomaly = models.OneToOneField(Anomaly, on_delete=models.CASCADE, primary_key=True, related_name="+")
    dispatched_at = models.DateTimeField(auto_now_add=True)


class UsedLink(TenantModel):
    """Nonces of one-click links already used: a signed link works once."""

    nonce = models.CharField(max_length=40, unique=True)
    used_at = models.DateTimeField(auto_now_add=True)
