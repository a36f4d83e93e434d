"""Filters for detection's list fields; they narrow an already tenant-scoped queryset."""

from __future__ import annotations

from datetime import datetime

import strawberry
import strawberry_django
from strawberry import auto

from anomalyhub.lib.errors import InvalidError

from ..models import Detector, Feedback, HistoryRun, ModelVersion, Rule, Severity, TrainingRun
from ..services.anomalies import filter_anomalies


@strawberry.input(description="The same filters as REST's /anomalies/: source is 'rule', 'detector' or an exact "
                              "'rule:<id>'; feedback 'none' means unlabelled; [start, end) on ts.")
class AnomalyFilter:
    series_id: strawberry.ID | None = None
    watchlist_id: strawberry.ID | None = None
    rule_id: strawberry.ID | None = None
    source: str | None = None
    severity: str | None = None
    feedback: str | None = None
    start: datetime | None = None
    end: datetime | None = None

    def apply(self, queryset):
        problems = {}
        ids = {}
        for name in ("series_id", "watchlist_id", "rule_id"):
            value = getattr(self, name)
            if value is not None and not (str(value).isdigit() and len(str(value)) <= 18):
                problems[name] = ["Expected a numeric id."]
            ids[name.removesuffix("_id")] = int(value) if value is not None and not problems.get(name) else None
        if self.severity and self.severity not in Severity.values:
            problems["severity"] = [f"Choose one of {Severity.values}."]
        if self.feedback and self.feedback not in [*Feedback.values, "none"]:
            problems["feedback"] = [f"Choose one of {[*Feedback.values, 'none']}."]
        if self.source is not None and len(self.source) > 40:
            problems["source"] = ["At most 40 characters."]
        if problems:
            raise InvalidError("Invalid anomaly filter; see details.", details=problems)
        return filter_anomalies(queryset, **ids, source=self.source, severity=self.severity,
                                feedback=self.feedback, start=self.start, end=self.end)


@strawberry_django.filter_type(Rule)
class RuleFilter:
    series_id: auto
    watchlist_id: auto
    enabled: auto
    severity: auto


@strawberry_django.filter_type(Detector)
class DetectorFilter:
    series_id: auto
    kind: auto
    status: auto
    enabled: auto


@strawberry_django.filter_type(ModelVersion)
class ModelVersionFilter:
    detector_id: auto
    active: auto


@strawberry_django.filter_type(TrainingRun)
class TrainingRunFilter:
    detector_id: auto
    status: auto


@strawberry_django.filter_type(HistoryRun)
class HistoryRunFilter:
    rule_id: auto
    detector_id: auto
    series_id: auto
    status: auto
