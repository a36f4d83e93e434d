"""Series and watchlists. Points live in the time-series store (watchlists/store/), not here."""

from django.db import models
from django.utils import timezone

from accounts.querysets import TenantModel


class SeriesKind(models.TextChoices):
    TRADE = "trade", "trades (ticks)"
    BAR = "bar", "OHLCV bars"
    METRIC = "metric", "numeric metric"


class Series(TenantModel):
    """One instrument or metric of an organization."""

    symbol = models.CharField(max_length=64, help_text="e.g. SPY, or a metric name like pump-7.temp")
    kind = models.CharField(max_length=8, choices=SeriesKind.choices, default=SeriesKind.BAR)
    # exchange_calendars code (XNYS, XNAS, XLON, ...); blank for series without trading sessions.
    exchange = models.CharField(max_length=16, blank=True, default="")
    name = models.CharField(max_length=200, blank=True, default="")
    # Bars' own interval, when known (60 for 1-minute bars); ticks and metrics have none.
    bar_seconds = models.PositiveIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_point_at = models.DateTimeField(null=True, blank=True)
    # The earliest time this series accepts points for, when older than INGEST_EARLIEST (1970 by
    # default): history is opt-in per series, since every month or year of it is a partition.
    history_from = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "symbol"], name="uniq_series_symbol")]
        indexes = [models.Index(fields=["organization", "symbol"])]
        verbose_name_plural = "series"

    def __str__(self):
        return self.symbol

    @property
    def is_market(self) -> bool:
        return bool(self.exchange)


class Watchlist(TenantModel):
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True, default="")
    series = models.ManyToManyField(Series, through="WatchlistItem", related_name="watchlists")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_watchlist_name")]

    def __str__(self):
        return self.name


class WatchlistItem(TenantModel):
    """A series on a watchlist; carries organization_id like every tenant table (Citus-ready)."""

    watchlist = models.ForeignKey(Watchlist, on_delete=models.CASCADE, related_name="items")
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="+")
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["watchlist", "series"], name="uniq_watchlist_item")]

    def __str__(self):
        return f"{self.watchlist_id}:{self.series_id}"


class IngestBatch(TenantModel):
    """One accepted batch, remembered by its idempotency key so a re-sent batch stores nothing.

    Keys: the client's Idempotency-Key header, or for import_csv "file:<sha256>:<row offset>"."""

    key = models.CharField(max_length=200)
    series = models.ForeignKey(Series, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    rows = models.PositiveIntegerField()
    first_ts = models.DateTimeField(null=True)
    last_ts = models.DateTimeField(null=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "key"], name="uniq_ingest_key")]

    def __str__(self):
        return self.key
from .providers.models import *  # noqa: E402,F401,F403


class PendingWork(TenantModel):
    """Work a committed batch left to do, one row per (purpose, series) and batch: its span of the
    series' points (first and last time, µs UTC). The one durable queue behind "rollups and
    detection eventually happen" (watchlists.pending): ingest appends the rows in the transaction
    that stores the points, so a row exists exactly when its points are committed, and appending
    never waits on a worker. A worker takes rows and deletes them in the transaction that does
    their work: a worker that dies rolls back, and the rows are there for the next one.

    purpose "rollups": the rollup refresh claims them (FOR UPDATE SKIP LOCKED, one series per
    worker at a time) and recomputes the buckets their spans touch. purpose "detect": the
    detection chunk takes a series' rows under its cursor lock; a span starting at or before what
    it has already streamed makes it replay from there (detection.pipeline), so points committed
    late, behind newer ones, are still detected."""

    class Purpose(models.TextChoices):
        ROLLUPS = "rollups"
        DETECT = "detect"

    purpose = models.CharField(max_length=8, choices=Purpose.choices)
    series = models.ForeignKey(Series, on_delete=models.CASCADE, related_name="+", db_index=False)
    start_us = models.BigIntegerField()
    end_us = models.BigIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["purpose", "organization", "series"], name="pendingwork_claim")]

    def __str__(self):
        return f"{self.purpose} {self.series_id}:[{self.start_us}, {self.end_us}]"
