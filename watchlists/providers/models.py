"""Provider credentials (encrypted), the link from a series to its provider, and backfill cursors."""

from django.db import models

from accounts.querysets import TenantModel


class ProviderName(models.TextChoices):
    ALPHAVANTAGE = "alphavantage", "Alpha Vantage"
    POLYGON = "polygon", "Polygon"
    REPLAY = "replay", "file replay"


class ProviderCredential(TenantModel):
    """One API key per organization and provider. The key is stored Fernet-encrypted (crypto.py)
    and never leaves the server again: the API shows only that one is set."""

    provider = models.CharField(max_length=16, choices=ProviderName.choices)
    secret_encrypted = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    last_tested_at = models.DateTimeField(null=True, blank=True)
    last_test_ok = models.BooleanField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "provider"], name="uniq_provider_credential")]

    def __str__(self):
        return f"{self.provider} key of org {self.organization_id}"


class SeriesProvider(TenantModel):
    """Where a series' data comes from. Import and gap jobs report their errors here, so the user
    sees on the series why its data stopped (rate limit, bad key, malformed payload)."""

    series = models.OneToOneField("watchlists.Series", on_delete=models.CASCADE, related_name="provider_link")
    provider = models.CharField(max_length=16, choices=ProviderName.choices)
    # The provider's own ticker when it differs from the series symbol (e.g. BRK.B vs BRK-B).
    provider_symbol = models.CharField(max_length=64, blank=True, default="")
    enabled = models.BooleanField(default=True)
    # The last exchange session fully imported by the daily job; a re-run for it does nothing.
    last_session = models.DateField(null=True, blank=True)
    last_import_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [models.Index(fields=["provider", "enabled"])]

    def __str__(self):
        return f"{self.series_id} <- {self.provider}"

    @property
    def symbol(self) -> str:
        return self.provider_symbol or self.series.symbol


class Backfill(TenantModel):
    """A backfill of [start, end] (exchange-local dates, inclusive) with its resume cursor.

    The same request run again continues after `done_until` instead of starting over."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    series = models.ForeignKey("watchlists.Series", on_delete=models.CASCADE, related_name="+")
    provider = models.CharField(max_length=16, choices=ProviderName.choices)
    start = models.DateField()
    end = models.DateField()
    done_until = models.DateField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    rows_stored = models.PositiveBigIntegerField(default=0)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["series", "provider", "start", "end"],
                                               name="uniq_backfill_range")]

    def __str__(self):
        return f"backfill {self.series_id} {self.start}..{self.end} ({self.status})"


__all__ = ["Backfill", "ProviderCredential", "ProviderName", "SeriesProvider"]
