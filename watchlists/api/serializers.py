from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from anomalyhub.lib.serializers import ModelSerializer, Serializer

from ..models import Series, SeriesKind, Watchlist
from ..providers.models import SeriesProvider
from ..services import series_timezone


class SeriesProviderStatusSerializer(ModelSerializer):
    """Where the series' data comes from and why it stopped (`last_error`: rate limit, bad key,
    a malformed payload of which nothing was stored). Null for series fed only by uploads."""

    class Meta:
        model = SeriesProvider
        fields = ["provider", "enabled", "last_session", "last_import_at", "last_error", "last_error_at"]
        read_only_fields = fields


class SeriesSerializer(ModelSerializer):
    kind = serializers.ChoiceField(choices=SeriesKind.choices, default=SeriesKind.BAR)
    timezone = serializers.SerializerMethodField()
    bar_seconds = serializers.IntegerField(min_value=1, max_value=86400 * 31, allow_null=True, required=False)
    provider = SeriesProviderStatusSerializer(source="provider_link", read_only=True, allow_null=True)

    class Meta:
        model = Series
        fields = ["id", "symbol", "kind", "exchange", "name", "bar_seconds", "history_from", "timezone",
                  "created_at", "last_point_at", "provider"]
        read_only_fields = ["id", "timezone", "created_at", "last_point_at", "provider"]

    def get_timezone(self, series) -> str:
        return series_timezone(series)


class WatchlistSerializer(ModelSerializer):
    series = serializers.ListField(child=serializers.IntegerField(min_value=1), required=False, max_length=5000,
                                   write_only=True, help_text="Series ids; replaces the watchlist's series.")

    class Meta:
        model = Watchlist
        fields = ["id", "name", "description", "series", "created_at"]
        read_only_fields = ["id", "created_at"]

    def to_representation(self, instance):
        data = super().to_representation(instance)
        data["series"] = sorted(item.series_id for item in instance.items.all())
        return data


class PointsQuerySerializer(Serializer):
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)
    resolution = serializers.ChoiceField(choices=["raw", "1m", "5m", "1h"], default="raw")
    limit = serializers.IntegerField(min_value=1, max_value=settings.POINTS_MAX_PAGE_ROWS, default=10_000)
    time_format = serializers.ChoiceField(choices=["iso", "epoch_ms"], default="iso")


@extend_schema_field({"type": ["string", "number", "null"]})
class _PointCell(serializers.JSONField):
    """A row's time (ISO string or epoch ms) or a value (a number, null when missing)."""


class PointsPageSerializer(Serializer):
    """The body of GET /points/ and /features/ (written by watchlists.api.points.page)."""

    series = serializers.IntegerField()
    resolution = serializers.CharField()
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    columns = serializers.ListField(child=serializers.CharField(), help_text='"ts" first, then the value columns.')
    points = serializers.ListField(
        child=serializers.ListField(child=_PointCell()),
        help_text="Rows [ts, *values]: ts as ISO 8601 or epoch milliseconds (time_format), a missing value null.")
    count = serializers.IntegerField()
    limit = serializers.IntegerField()
    truncated = serializers.BooleanField()
    next = serializers.URLField(allow_null=True, help_text="The next page when truncated, else null.")


class IngestResultSerializer(Serializer):
    series_id = serializers.IntegerField()
    received = serializers.IntegerField()
    stored = serializers.IntegerField()
    duplicate = serializers.BooleanField()
    first_ts = serializers.CharField(allow_null=True)
    last_ts = serializers.CharField(allow_null=True)


class MultiIngestSerializer(Serializer):
    points = serializers.DictField(child=serializers.ListField(child=serializers.JSONField()),
                                   help_text='{"SPY": [{"ts": "...", "price": 1, "size": 100}], ...}')
