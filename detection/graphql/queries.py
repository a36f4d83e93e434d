"""Detection queries: rules, anomalies (REST's filters), detectors, models and training runs."""

from __future__ import annotations

import strawberry
import strawberry_django
from strawberry_django.pagination import OffsetPaginated

from accounts.graphql.base import actor_of, by_id

from ..models import Anomaly, Detector, HistoryRun, ModelVersion, Rule, TrainingRun
from .filters import (
    AnomalyFilter,
    DetectorFilter,
    HistoryRunFilter,
    ModelVersionFilter,
    RuleFilter,
    TrainingRunFilter,
)
from .types import AnomalyType, DetectorType, HistoryRunType, ModelVersionType, RuleType, TrainingRunType


@strawberry.type
class DetectionQuery:
    @strawberry_django.field
    def rule(self, id: strawberry.ID) -> RuleType | None:
        return by_id(Rule, id)

    rule_list: OffsetPaginated[RuleType] = strawberry_django.offset_paginated(filters=RuleFilter)

    @strawberry_django.field
    def anomaly(self, id: strawberry.ID) -> AnomalyType | None:
        return by_id(Anomaly, id)

    @strawberry_django.offset_paginated(OffsetPaginated[AnomalyType],
                                        description="Anomalies, newest first.")
    def anomaly_list(self, info: strawberry.Info, filters: AnomalyFilter | None = None) -> list[AnomalyType]:
        queryset = Anomaly.objects.for_actor(actor_of(info)).order_by("-ts", "-pk")
        return filters.apply(queryset) if filters else queryset

    @strawberry_django.field
    def detector(self, id: strawberry.ID) -> DetectorType | None:
        return by_id(Detector, id)

    detector_list: OffsetPaginated[DetectorType] = strawberry_django.offset_paginated(filters=DetectorFilter)

    @strawberry_django.field
    def model_version(self, id: strawberry.ID) -> ModelVersionType | None:
        return by_id(ModelVersion, id)

    model_version_list: OffsetPaginated[ModelVersionType] = strawberry_django.offset_paginated(
        filters=ModelVersionFilter)

    @strawberry_django.field
    def training_run(self, id: strawberry.ID) -> TrainingRunType | None:
        return by_id(TrainingRun, id)

    training_run_list: OffsetPaginated[TrainingRunType] = strawberry_django.offset_paginated(
        filters=TrainingRunFilter)

    @strawberry_django.field
    def history_run(self, id: strawberry.ID) -> HistoryRunType | None:
        return by_id(HistoryRun, id)

    history_run_list: OffsetPaginated[HistoryRunType] = strawberry_django.offset_paginated(
        filters=HistoryRunFilter)
