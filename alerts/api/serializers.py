from rest_framework import serializers

from accounts.api.fields import TenantPrimaryKeyRelatedField
from detection.api.serializers import BacktestQuerySerializer as WindowSerializer  # noqa: F401 (start/end)
from detection.models import Detector, Rule, Severity
from watchlists.models import Series, Watchlist

from ..models import AlertSubscription, Channel, DeliveryAttempt, Notification, WebhookEndpoint


class AlertSubscriptionSerializer(serializers.ModelSerializer):
    watchlist = TenantPrimaryKeyRelatedField(queryset=Watchlist.objects.all(), required=False, allow_null=True)
    series = TenantPrimaryKeyRelatedField(queryset=Series.objects.all(), required=False, allow_null=True)
    rule = TenantPrimaryKeyRelatedField(queryset=Rule.objects.all(), required=False, allow_null=True)
    detector = TenantPrimaryKeyRelatedField(queryset=Detector.objects.all(), required=False, allow_null=True)
    webhook = TenantPrimaryKeyRelatedField(queryset=WebhookEndpoint.objects.all(), required=False, allow_null=True)
    # Plain strings validated below, not enums: the schema already has SeverityEnum/ChannelEnum under
    # other field names, and drf-spectacular warns (check --deploy fails) on a second name for them.
    channels = serializers.ListField(child=serializers.CharField(max_length=8), min_length=1, max_length=2,
                                     default=list, help_text='"email" and/or "webhook"')
    min_severity = serializers.CharField(max_length=10, default=Severity.LOW, help_text="low|medium|high|critical")

    def validate_channels(self, value):
        if any(c not in Channel.values for c in value):
            raise serializers.ValidationError(f"Choose from {', '.join(Channel.values)}.")
        return value

    def validate_min_severity(self, value):
        if value not in Severity.values:
            raise serializers.ValidationError(f"Choose from {', '.join(Severity.values)}.")
        return value

    class Meta:
        model = AlertSubscription
        fields = ["id", "user", "name", "target", "watchlist", "series", "rule", "detector", "min_severity",
                  "channels", "webhook", "cooldown_seconds", "group_window_seconds", "incident_min_symbols",
                  "quiet_start", "quiet_end", "quiet_mode", "snooze_until", "session_only", "notify_resolution",
                  "resolve_after_seconds", "flap_threshold", "flap_window_seconds", "enabled", "created_at",
                  "updated_at"]
        read_only_fields = ["id", "user", "created_at", "updated_at"]


class WebhookEndpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = WebhookEndpoint
        fields = ["id", "url", "description", "enabled", "failure_count", "disabled_at", "disabled_reason",
                  "previous_secret_expires_at", "created_at"]
        read_only_fields = ["id", "failure_count", "disabled_at", "disabled_reason", "previous_secret_expires_at",
                            "created_at"]


class WebhookEndpointWithSecretSerializer(WebhookEndpointSerializer):
    """Only in the answers to create and rotate-secret: the secret is shown once."""

    secret = serializers.CharField(read_only=True)

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]


class DeliveryAttemptSerializer(serializers.ModelSerializer):
    class Meta:
        model = DeliveryAttempt
        fields = ["number", "outcome", "status_code", "latency_ms", "response_excerpt", "error", "created_at"]
        read_only_fields = fields


class DeliverySerializer(serializers.ModelSerializer):
    channel = serializers.CharField(read_only=True, help_text="email | webhook")
    email = serializers.EmailField(read_only=True, allow_blank=True, help_text="the address; empty for a webhook")
    attempts_log = DeliveryAttemptSerializer(source="delivery_attempts", many=True, read_only=True)

    class Meta:
        model = Notification
        fields = ["id", "idempotency_key", "kind", "channel", "subscription", "endpoint", "email", "status",
                  "event_ts", "anomaly_ids", "series_ids", "due_at", "attempts", "last_error", "sent_at",
                  "replay_of", "created_at", "payload", "attempts_log"]
        read_only_fields = fields


class LinkResultSerializer(serializers.Serializer):
    action = serializers.CharField()
