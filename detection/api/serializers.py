from rest_framework import serializers

from accounts.api.fields import TenantPrimaryKeyRelatedField
from anomalyhub.lib.serializers import ModelSerializer, Serializer
from watchlists.models import Series, Watchlist
from watchlists.store.timeconv import from_us

from ..models import Anomaly, Detector, Feedback, HistoryRun, ModelVersion, Rule, Severity, TrainingRun


class RuleSerializer(ModelSerializer):
    series = TenantPrimaryKeyRelatedField(queryset=Series.objects.all(), required=False, allow_null=True)
    watchlist = TenantPrimaryKeyRelatedField(queryset=Watchlist.objects.all(), required=False, allow_null=True)
    metrics = serializers.CharField(max_length=8000)
    window_size = serializers.IntegerField(min_value=1, max_value=10**12, required=False, allow_null=True,
                                           help_text="milliseconds")
    step = serializers.IntegerField(min_value=1, max_value=10**12, required=False, allow_null=True,
                                    help_text="milliseconds")
    severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.MEDIUM)
    run_on_history = serializers.BooleanField(
        write_only=True, required=False, default=False,
        help_text="also run the rule over the series' stored history, as a background job (see history_runs)")
    history_start = serializers.DateTimeField(write_only=True, required=False, allow_null=True,
                                              help_text="where the history run starts (default: the first point)")
    history_runs = serializers.SerializerMethodField()

    class Meta:
        model = Rule
        fields = ["id", "name", "metrics", "window_size", "step", "round_time", "series", "watchlist", "severity",
                  "enabled", "created_at", "updated_at", "run_on_history", "history_start", "history_runs"]
        read_only_fields = ["id", "created_at", "updated_at"]

    def get_history_runs(self, rule) -> list[dict]:
        """The history runs this request queued (empty unless run_on_history)."""
        return HistoryRunSerializer(getattr(rule, "queued_history_runs", []), many=True).data


class BacktestQuerySerializer(Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()

    def validate(self, data):
        if data["end"] <= data["start"]:
            raise serializers.ValidationError({"end": ["end must be after start."]})
        return data


class _UnlabelledAsNull(serializers.ChoiceField):
    """The model stores "not labelled yet" as ""; the API says null, which the enum can describe."""

    def to_representation(self, value):
        return super().to_representation(value) if value else None


class AnomalySerializer(ModelSerializer):
    symbol = serializers.CharField(read_only=True)  # annotated by the viewset's queryset
    feedback = _UnlabelledAsNull(choices=Feedback.choices, allow_null=True, read_only=True,
                                 help_text="The label given, or null while unlabelled.")

    class Meta:
        model = Anomaly
        fields = ["id", "series", "symbol", "ts", "source", "rule", "metric_index", "text", "observed", "expected",
                  "score", "severity", "model_version", "feedback", "feedback_at", "created_at"]
        read_only_fields = fields


class BacktestAnomalySerializer(Serializer):
    series = serializers.IntegerField()
    symbol = serializers.CharField()
    ts = serializers.DateTimeField()
    metric_index = serializers.IntegerField()
    text = serializers.CharField()
    observed = serializers.DictField(help_text="The values the metric saw, by expression.")


class BacktestResultSerializer(Serializer):
    """What rules.services.backtest answers: the anomalies a rule would have produced; nothing stored."""

    rule = serializers.IntegerField(allow_null=True, help_text="null for an unsaved rule (dry run)")
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    rows_processed = serializers.IntegerField()
    count = serializers.IntegerField()
    per_series = serializers.DictField(child=serializers.IntegerField(), help_text="series id -> anomalies")
    anomalies = BacktestAnomalySerializer(many=True)
    truncated = serializers.BooleanField()
    max_rows = serializers.IntegerField()


class FeedbackSerializer(Serializer):
    label = serializers.ChoiceField(choices=Feedback.choices)


class AnomalyFilterSerializer(Serializer):
    series = serializers.IntegerField(required=False, min_value=1)
    watchlist = serializers.IntegerField(required=False, min_value=1)
    rule = serializers.IntegerField(required=False, min_value=1)
    source = serializers.CharField(required=False, max_length=40)
    severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    feedback = serializers.ChoiceField(choices=[*Feedback.choices, ("none", "none")], required=False)
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)


class DetectorSerializer(ModelSerializer):
    series = TenantPrimaryKeyRelatedField(queryset=Series.objects.all())
    benchmark = TenantPrimaryKeyRelatedField(queryset=Series.objects.all(), required=False, allow_null=True)
    kind = serializers.ChoiceField(choices=["robust_zscore", "isolation_forest", "lstm_forecast", "ensemble"],
                                   default="ensemble")
    params = serializers.DictField(required=False, default=dict)
    threshold = serializers.FloatField(min_value=0.0, max_value=1.0, default=0.5)
    active_version = serializers.SerializerMethodField()
    latest_run = serializers.SerializerMethodField()

    class Meta:
        model = Detector
        fields = ["id", "series", "kind", "params", "benchmark", "threshold", "severity", "enabled", "status",
                  "needs_retraining", "active_version", "latest_run", "created_at"]
        read_only_fields = ["id", "status", "needs_retraining", "created_at"]

    def get_active_version(self, detector) -> int | None:
        active = [v for v in detector.versions.all() if v.active]
        return active[0].version if active else None

    def get_latest_run(self, detector) -> dict | None:
        runs = sorted(detector.runs.all(), key=lambda r: r.pk)
        return TrainingRunSerializer(runs[-1]).data if runs else None


class ModelVersionSerializer(ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "detector", "version", "params", "train_start", "train_end", "train_points", "validation",
                  "active", "training_seconds", "created_at"]
        read_only_fields = fields


class TrainingRunSerializer(ModelSerializer):
    model_version = serializers.SlugRelatedField(slug_field="version", read_only=True, allow_null=True)

    class Meta:
        model = TrainingRun
        fields = ["id", "detector", "reason", "status", "progress", "message", "start", "end", "model_version",
                  "created_at", "started_at", "finished_at"]
        read_only_fields = fields


class TrainRequestSerializer(Serializer):
    start = serializers.DateTimeField(required=False)
    end = serializers.DateTimeField(required=False)
    run_on_history = serializers.BooleanField(required=False, default=False,
                                              help_text="once trained, run the model over the stored history")
    history_start = serializers.DateTimeField(required=False, allow_null=True)


class HistoryRequestSerializer(Serializer):
    start = serializers.DateTimeField(required=False, allow_null=True,
                                      help_text="where the run starts (default: the series' first point)")


class HistoryRunSerializer(ModelSerializer):
    """A history run: a background job with its progress (points_done of points_total)."""

    progress = serializers.FloatField(read_only=True)
    source = serializers.CharField(read_only=True)
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()

    class Meta:
        model = HistoryRun
        fields = ["id", "series", "rule", "detector", "source", "training_run", "status", "progress", "points_total",
                  "points_done", "anomalies_found", "start", "end", "message", "created_at", "started_at",
                  "finished_at"]
        read_only_fields = fields

    def get_start(self, run) -> str:
        return _iso_us(run.start_us)

    def get_end(self, run) -> str:
        return _iso_us(run.end_us)


def _iso_us(us: int) -> str:
    return from_us(us).isoformat().replace("+00:00", "Z")


class TrainResponseSerializer(TrainingRunSerializer):
    """A queued training run, with the history run that follows it when run_on_history was asked."""

    history_run = HistoryRunSerializer(read_only=True, allow_null=True)

    class Meta(TrainingRunSerializer.Meta):
        fields = [*TrainingRunSerializer.Meta.fields, "history_run"]
        read_only_fields = fields


class EvaluationQuerySerializer(Serializer):
    start = serializers.DateTimeField(required=False, help_text="default: 30 days before end")
    end = serializers.DateTimeField(required=False, help_text="default: just after the series' last point")


class DetectorEventSerializer(Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    anomaly_id = serializers.IntegerField(help_text="the event's first anomaly")
    points = serializers.IntegerField(help_text="anomalies merged into the event")
    max_score = serializers.FloatField(allow_null=True)
    severity = serializers.ChoiceField(choices=Severity.choices)
    labels = serializers.DictField(child=serializers.IntegerField(), help_text="feedback label -> anomalies")
    verdict = serializers.ChoiceField(choices=["true", "false", "unlabelled"])


class DetectorEvaluationSerializer(Serializer):
    start = serializers.DateTimeField()
    end = serializers.DateTimeField()
    gap_seconds = serializers.FloatField(help_text="anomalies closer than this are one event")
    anomalies = serializers.IntegerField()
    truncated = serializers.BooleanField(help_text="the range held more anomalies or events than were read")
    events_total = serializers.IntegerField()
    labelled_events = serializers.IntegerField()
    true_events = serializers.IntegerField()
    false_events = serializers.IntegerField()
    precision = serializers.FloatField(allow_null=True, help_text="true / labelled events; null: none labelled")
    incidents = serializers.IntegerField(help_text="incidents people confirmed on the series, from any source")
    incidents_found = serializers.IntegerField()
    recall = serializers.FloatField(allow_null=True, help_text="incidents found / incidents; null: none confirmed")
    events = DetectorEventSerializer(many=True, help_text="newest first")
