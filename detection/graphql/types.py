"""GraphQL types of detection: rules, anomalies, detectors, the model registry and training runs."""

from __future__ import annotations

from datetime import datetime

import strawberry
import strawberry_django
from strawberry import auto
from strawberry.scalars import JSON

from accounts.graphql.base import BigInt, TenantScoped
from watchlists.graphql.types import SeriesType, WatchlistType
from watchlists.store.timeconv import from_us

from ..models import Anomaly, Detector, HistoryRun, ModelVersion, Rule, TrainingRun
from ..services import detectors as detector_services
from ..services import evaluation as evaluation_services
from ..services import rules as rule_services


@strawberry_django.type(Rule, description="DolphinDB-style metrics over one series or one watchlist; "
                                          "windowSize and step in milliseconds.")
class RuleType(TenantScoped):
    id: auto
    name: auto
    metrics: auto
    window_size: BigInt | None
    step: BigInt | None
    round_time: auto
    series: SeriesType | None
    watchlist: WatchlistType | None
    severity: auto
    enabled: auto
    created_at: auto
    updated_at: auto

    @strawberry_django.field(description="Engine statistics as in DolphinDB's getStreamEngineStat.")
    def stats(self) -> JSON:
        return rule_services.rule_stats(self)


@strawberry_django.type(ModelVersion)
class ModelVersionType(TenantScoped):
    ordering = ("detector_id", "-version")

    id: auto
    detector: DetectorType
    version: auto
    params: auto
    train_start: auto
    train_end: auto
    train_points: auto
    validation: auto
    active: auto
    training_seconds: auto
    created_at: auto


@strawberry_django.type(TrainingRun)
class TrainingRunType(TenantScoped):
    ordering = ("-pk",)

    id: auto
    detector: DetectorType
    reason: auto
    status: auto
    progress: auto
    message: auto
    start: auto
    end: auto
    model_version: ModelVersionType | None
    created_at: auto
    started_at: auto
    finished_at: auto


@strawberry.type(description="Anomalies of one detector merged into one event (detection.services.evaluation).")
class DetectorEventType:
    start: datetime
    end: datetime
    anomaly_id: strawberry.ID
    points: int
    max_score: float | None
    severity: str
    labels: JSON
    verdict: str


@strawberry.type(description="A detector's events over a range, with precision and recall from labels.")
class DetectorEvaluationType:
    start: datetime
    end: datetime
    gap_seconds: float
    anomalies: int
    truncated: bool
    events_total: int
    labelled_events: int
    true_events: int
    false_events: int
    precision: float | None
    incidents: int
    incidents_found: int
    recall: float | None
    events: list[DetectorEventType]


@strawberry_django.type(Detector)
class DetectorType(TenantScoped):
    id: auto
    series: SeriesType
    kind: auto
    params: auto
    benchmark: SeriesType | None
    threshold: auto
    severity: auto
    enabled: auto
    status: auto
    needs_retraining: auto
    created_at: auto
    versions: list[ModelVersionType] = strawberry_django.field(pagination=True)
    runs: list[TrainingRunType] = strawberry_django.field(pagination=True)

    @strawberry_django.field(description="PSI per input between the training window and the last day.")
    def drift(self) -> JSON:
        return detector_services.drift(self)

    @strawberry_django.field(description="Precision from labels and a suggested threshold.")
    def quality(self) -> JSON:
        return {"precision": detector_services.precision(Anomaly.objects.filter(
                    organization_id=self.organization_id, detector=self)),
                "suggested_threshold": detector_services.suggest_threshold(self), "threshold": self.threshold}

    @strawberry_django.field(description="Events over [start, end) (default: the series' last 30 days) and "
                                         "their precision and recall from the organization's labels.")
    def evaluation(self, start: datetime | None = None, end: datetime | None = None) -> DetectorEvaluationType:
        result = evaluation_services.evaluate_detector(self, start=start, end=end)
        events = [DetectorEventType(**event) for event in result.pop("events")]
        return DetectorEvaluationType(**result, events=events)


@strawberry_django.type(Anomaly)
class AnomalyType(TenantScoped):
    ordering = ("-ts", "-pk")

    id: auto
    series: SeriesType
    ts: auto
    source: auto
    rule: RuleType | None
    detector: DetectorType | None
    metric_index: auto
    text: auto
    observed: auto
    expected: auto
    score: auto
    severity: auto
    model_version: auto
    feedback: auto
    feedback_at: auto
    created_at: auto


@strawberry.type
class BacktestAnomalyType:
    series_id: strawberry.ID
    symbol: str
    ts: datetime
    metric_index: int
    text: str
    observed: JSON


@strawberry.type(description="What a rule would have produced over [start, end); nothing is stored.")
class BacktestType:
    rule_id: strawberry.ID | None
    start: datetime
    end: datetime
    rows_processed: BigInt
    count: int
    per_series: JSON
    anomalies: list[BacktestAnomalyType]
    truncated: bool
    max_rows: BigInt

    @classmethod
    def from_result(cls, result: dict) -> BacktestType:
        return cls(rule_id=result["rule"], start=datetime.fromisoformat(result["start"]),
                   end=datetime.fromisoformat(result["end"]), rows_processed=result["rows_processed"],
                   count=result["count"], per_series=result["per_series"], truncated=result["truncated"],
                   max_rows=result["max_rows"],
                   anomalies=[BacktestAnomalyType(series_id=a["series"], symbol=a["symbol"],
                                                  ts=datetime.fromisoformat(a["ts"]), metric_index=a["metric_index"],
                                                  text=a["text"], observed=a["observed"])
                              for a in result["anomalies"]])


@strawberry.type(description="A new anomaly as the live feed announces it; details are one query away.")
class AnomalyEventType:
    id: strawberry.ID
    series_id: strawberry.ID
    ts: datetime
    source: str
    text: str
    severity: str
    score: float | None
    metric_index: int
    observed: JSON


@strawberry_django.type(HistoryRun, description="A rule or detector run over a series' stored history: a "
                                                "background job with its progress.")
class HistoryRunType(TenantScoped):
    ordering = ("-pk",)

    id: auto
    series: SeriesType
    rule: RuleType | None
    detector: DetectorType | None
    status: auto
    points_total: BigInt
    points_done: BigInt
    anomalies_found: auto
    message: auto
    created_at: auto
    started_at: auto
    finished_at: auto

    @strawberry_django.field(description="0..1: points done of points total.")
    def progress(self) -> float:
        return self.progress

    @strawberry_django.field(description="First time covered (UTC).")
    def start(self) -> datetime:
        return from_us(self.start_us)

    @strawberry_django.field(description="Last time covered (UTC): where live detection stood.")
    def end(self) -> datetime:
        return from_us(self.end_us)
