"""Rules and anomalies REST API: thin adapters over detection services."""

from django.db.models import F, Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.api.base import TenantReadOnlyViewSet, TenantViewSet

from ..models import Anomaly, Detector, HistoryRun, ModelVersion, Rule, TrainingRun
from ..services import anomalies as anomaly_services
from ..services import detectors as detector_services
from ..services import evaluation as evaluation_services
from ..services import history as history_services
from ..services import rules as rule_services
from . import serializers as s


def _rule_input(data: dict, base: Rule | None = None) -> rule_services.RuleInput:
    fields = {f: getattr(base, f) for f in rule_services.RuleInput.__dataclass_fields__} if base else {}
    fields.update(data)
    return rule_services.RuleInput(**fields)


def _history_options(data: dict) -> tuple[dict, dict]:
    """(the rule's fields, {run_on_history, start}) from a validated rule body."""
    data = dict(data)
    return data, {"run_on_history": data.pop("run_on_history", False), "start": data.pop("history_start", None)}


class RuleViewSet(TenantViewSet):
    """Rules: DolphinDB-style metrics over a series or a watchlist. window_size/step in ms."""

    serializer_class = s.RuleSerializer
    queryset = Rule.objects.select_related("series", "watchlist").order_by("pk")
    action_permissions = {"backtest": "view", "dry_run": "view", "stats": "view", "history": "change"}

    def perform_create(self, serializer):
        data, history = _history_options(serializer.validated_data)
        serializer.instance = history_services.save_rule(actor=self.actor, data=_rule_input(data), **history)

    def perform_update(self, serializer):
        rule = serializer.instance
        data, history = _history_options(serializer.validated_data)
        # Switching target: naming one clears the other.
        if data.get("series") is not None:
            data.setdefault("watchlist", None)
        if data.get("watchlist") is not None:
            data.setdefault("series", None)
        serializer.instance = history_services.save_rule(actor=self.actor, data=_rule_input(data, rule), rule=rule,
                                                         **history)

    def perform_destroy(self, instance):
        rule_services.delete_rule(actor=self.actor, rule=instance)

    def _window(self, request):
        query = s.BacktestQuerySerializer(data={**request.query_params.dict(), **_dict(request.data)})
        query.is_valid(raise_exception=True)
        return query.validated_data

    @extend_schema(request=None, parameters=[s.BacktestQuerySerializer], responses=s.BacktestResultSerializer)
    @action(detail=True, methods=["post"])
    def backtest(self, request, pk=None):
        """The anomalies this rule would have produced over [start, end); nothing is stored."""
        rule = self.get_object()
        window = self._window(request)
        return Response(rule_services.backtest(actor=self.actor, rule=rule, **window))

    @extend_schema(request=s.RuleSerializer, parameters=[s.BacktestQuerySerializer], operation_id="rules_dry_run",
                   responses=s.BacktestResultSerializer)
    @action(detail=False, methods=["post"], url_path="backtest")
    def dry_run(self, request):
        """Backtests an unsaved rule (the body is a rule) over [start, end)."""
        window = self._window(request)
        body = {k: v for k, v in _dict(request.data).items() if k not in ("start", "end")}
        serializer = self.get_serializer(data=body)
        serializer.is_valid(raise_exception=True)
        data = rule_services.RuleInput(**_history_options(serializer.validated_data)[0])
        rule_services.check_target(self.actor, data)
        rule = Rule(organization_id=self.actor.organization_id, **vars(data))
        return Response(rule_services.backtest(actor=self.actor, rule=rule, **window))

    @extend_schema(request=s.HistoryRequestSerializer, responses={202: s.HistoryRunSerializer(many=True)})
    @action(detail=True, methods=["post"], pagination_class=None)
    def history(self, request, pk=None):
        """Runs the rule over its series' stored history (from `start`, default the first point) as
        background jobs; returns them (GET /history-runs/{id}/ for progress). Re-running stores no
        duplicates."""
        rule = self.get_object()
        body = s.HistoryRequestSerializer(data=_dict(request.data))
        body.is_valid(raise_exception=True)
        runs = history_services.request_for_rule(actor=self.actor, rule=rule, start=body.validated_data.get("start"))
        return Response(s.HistoryRunSerializer(runs, many=True).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=OpenApiTypes.OBJECT)  # the engine's own counters, named as DolphinDB names them
    @action(detail=True, methods=["get"])
    def stats(self, request, pk=None):
        """Engine statistics as in DolphinDB's getStreamEngineStat, summed over the rule's series."""
        return Response(rule_services.rule_stats(self.get_object()))


def _dict(data) -> dict:
    return data if isinstance(data, dict) else {}


class AnomalyViewSet(TenantReadOnlyViewSet):
    """Anomalies, newest first. Filters: series, watchlist, rule, source, severity, feedback, start, end."""

    serializer_class = s.AnomalySerializer
    # The series' symbol as a column of the page's query: no Series object built per row.
    queryset = Anomaly.objects.annotate(symbol=F("series__symbol")).order_by("-ts", "-pk")
    action_permissions = {"feedback": "change"}

    def get_queryset(self):
        qs = super().get_queryset()
        if self.action != "list":
            return qs
        filters = s.AnomalyFilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return anomaly_services.filter_anomalies(qs, **filters.validated_data)

    @extend_schema(parameters=[s.AnomalyFilterSerializer])
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=s.FeedbackSerializer, responses=s.AnomalySerializer)
    @action(detail=True, methods=["post"])
    def feedback(self, request, pk=None):
        anomaly = self.get_object()
        body = s.FeedbackSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        anomaly_services.label_anomaly(actor=self.actor, anomaly_id=anomaly.pk, label=body.validated_data["label"])
        return Response(s.AnomalySerializer(self.get_object()).data, status=status.HTTP_200_OK)


class DetectorViewSet(TenantViewSet):
    """Learned detectors per series; POST /{id}/train/ queues training, GET /{id}/drift/ and
    /{id}/quality/ report drift (PSI), precision from labels and a threshold suggestion."""

    serializer_class = s.DetectorSerializer
    queryset = Detector.objects.select_related("series").prefetch_related(
        Prefetch("versions", queryset=ModelVersion.objects.only("id", "detector_id", "version", "active")),
        "runs").order_by("pk")
    action_permissions = {"train": "change", "drift": "view", "quality": "view", "stream": "view",
                          "history": "change", "evaluation": "view"}

    def perform_create(self, serializer):
        serializer.instance = detector_services.save_detector(actor=self.actor, detector=Detector(
            **serializer.validated_data))

    def perform_update(self, serializer):
        detector = serializer.instance
        for field, value in serializer.validated_data.items():
            setattr(detector, field, value)
        serializer.instance = detector_services.save_detector(actor=self.actor, detector=detector)

    def perform_destroy(self, instance):
        detector_services.delete_detector(actor=self.actor, detector=instance)

    @extend_schema(request=s.TrainRequestSerializer, responses={202: s.TrainResponseSerializer})
    @action(detail=True, methods=["post"])
    def train(self, request, pk=None):
        """Queues training on the series' history (default: the last 90 days); returns the run."""
        detector = self.get_object()
        body = s.TrainRequestSerializer(data=_dict(request.data))
        body.is_valid(raise_exception=True)
        run = history_services.train(actor=self.actor, detector=detector, **body.validated_data)
        history = run.history_run
        run.refresh_from_db()
        run.history_run = history
        return Response(s.TrainResponseSerializer(run).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=s.HistoryRequestSerializer, responses={202: s.HistoryRunSerializer(many=True)})
    @action(detail=True, methods=["post"], pagination_class=None)
    def history(self, request, pk=None):
        """Runs the active model over the series' stored history as a background job; returns it
        (an empty list when live detection already covers every stored point)."""
        detector = self.get_object()
        body = s.HistoryRequestSerializer(data=_dict(request.data))
        body.is_valid(raise_exception=True)
        run = history_services.request_for_detector(actor=self.actor, detector=detector,
                                                    start=body.validated_data.get("start"))
        return Response(s.HistoryRunSerializer([run] if run else [], many=True).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=OpenApiTypes.OBJECT)  # per-feature statistics, keyed by feature name
    @action(detail=True, methods=["get"])
    def drift(self, request, pk=None):
        return Response(detector_services.drift(self.get_object()))

    @extend_schema(responses=inline_serializer("DetectorQuality", {
        "precision": serializers.DictField(help_text="labelled, precision and labels by kind"),
        "suggested_threshold": serializers.DictField(allow_null=True), "threshold": serializers.FloatField()}))
    @action(detail=True, methods=["get"])
    def quality(self, request, pk=None):
        detector = self.get_object()
        return Response({"precision": detector_services.precision(Anomaly.objects.filter(detector=detector)),
                         "suggested_threshold": detector_services.suggest_threshold(detector),
                         "threshold": detector.threshold})

    @extend_schema(parameters=[s.EvaluationQuerySerializer], responses=s.DetectorEvaluationSerializer)
    @action(detail=True, methods=["get"])
    def evaluation(self, request, pk=None):
        """The detector's events over a range and their precision and recall from the organization's
        labels (detection.services.evaluation)."""
        query = s.EvaluationQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        result = evaluation_services.evaluate_detector(self.get_object(), **query.validated_data)
        return Response(s.DetectorEvaluationSerializer(result).data)

    @extend_schema(responses=OpenApiTypes.OBJECT)  # `state` and `model_version`, plus the model's own status
    @action(detail=True, methods=["get"])
    def stream(self, request, pk=None):
        """The streaming model's readiness: warming up (and how many more points), or ready."""
        detector = self.get_object()
        version, model = detector_services.active_model(detector)
        if model is None:
            return Response({"state": detector.status, "model_version": None})
        return Response({**model.status(), "model_version": version.version})


class ModelVersionViewSet(TenantReadOnlyViewSet):
    """The model registry: every trained version, its window and validation; /{id}/activate/."""

    serializer_class = s.ModelVersionSerializer
    queryset = ModelVersion.objects.defer("artifact", "baseline").order_by("detector_id", "-version")
    action_permissions = {"activate": "change"}

    def get_queryset(self):
        qs = super().get_queryset()
        detector = self.request.query_params.get("detector")
        return qs.filter(detector_id=detector) if detector and detector.isdigit() else qs

    @extend_schema(request=None)
    @action(detail=True, methods=["post"])
    def activate(self, request, pk=None):
        version = detector_services.activate_version(actor=self.actor, version=self.get_object())
        return Response(s.ModelVersionSerializer(version).data)


class TrainingRunViewSet(TenantReadOnlyViewSet):
    """Training history and progress."""

    serializer_class = s.TrainingRunSerializer
    queryset = TrainingRun.objects.select_related("model_version").order_by("-pk")


class HistoryRunViewSet(TenantReadOnlyViewSet):
    """History runs (rules and detectors over stored points): status and progress. Filters: rule,
    detector, series."""

    serializer_class = s.HistoryRunSerializer
    queryset = HistoryRun.objects.defer("snapshot").order_by("-pk")

    def get_queryset(self):
        qs = super().get_queryset()
        for name in ("rule", "detector", "series"):
            value = self.request.query_params.get(name)
            if value is not None:
                qs = qs.filter(**{f"{name}_id": int(value) if value.isdigit() and len(value) < 19 else -1})
        return qs
