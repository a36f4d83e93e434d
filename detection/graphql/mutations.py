"""Detection mutations: thin adapters over detection.services (which check every right).

Invalid input (a rule that does not compile, an unknown target) is a typed InputError result with
codes and positions; missing or other organizations' objects are `not_found` GraphQL errors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
import strawberry_django
from strawberry.scalars import JSON

from accounts.graphql.base import BigInt, InputError, actor_of, given, input_errors
from accounts.tenancy import Actor, get_for_actor
from anomalyhub.lib.errors import InvalidError
from watchlists.models import Series, Watchlist

from ..models import Anomaly, Detector, ModelVersion, Rule
from ..services import anomalies as anomaly_services
from ..services import detectors as detector_services
from ..services import history as history_services
from ..services import rules as rule_services
from .types import (
    AnomalyType,
    BacktestType,
    DetectorType,
    HistoryRunType,
    ModelVersionType,
    RuleType,
    TrainingRunType,
)

RuleResult = Annotated[RuleType | InputError, strawberry.union("RuleResult")]
BacktestResult = Annotated[BacktestType | InputError, strawberry.union("BacktestResult")]
AnomalyResult = Annotated[AnomalyType | InputError, strawberry.union("AnomalyResult")]
DetectorResult = Annotated[DetectorType | InputError, strawberry.union("DetectorResult")]
TrainingRunResult = Annotated[TrainingRunType | InputError, strawberry.union("TrainingRunResult")]


@strawberry.type(description="The history runs a request queued (none when live detection covers every point).")
class HistoryRunListType:
    runs: list[HistoryRunType]


HistoryRunsResult = Annotated[HistoryRunListType | InputError, strawberry.union("HistoryRunsResult")]


HISTORY_HELP = ("Also run over the series' stored history (from historyStart, default the first point) as "
                "background jobs: historyRunList(filters: {ruleId: ...}) shows their progress.")


@strawberry.input
class CreateRuleInput:
    name: str
    metrics: str
    series_id: strawberry.ID | None = None
    watchlist_id: strawberry.ID | None = None
    window_size: BigInt | None = None
    step: BigInt | None = None
    round_time: bool = True
    severity: str = "medium"
    enabled: bool = True
    run_on_history: bool = strawberry.field(default=False, description=HISTORY_HELP)
    history_start: datetime | None = None


@strawberry.input(description="Only the fields given change; naming a series clears the watchlist and vice versa.")
class UpdateRuleInput:
    name: str | None = strawberry.UNSET
    metrics: str | None = strawberry.UNSET
    series_id: strawberry.ID | None = strawberry.UNSET
    watchlist_id: strawberry.ID | None = strawberry.UNSET
    window_size: BigInt | None = strawberry.UNSET
    step: BigInt | None = strawberry.UNSET
    round_time: bool | None = strawberry.UNSET
    severity: str | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET
    run_on_history: bool = strawberry.field(default=False, description=HISTORY_HELP)
    history_start: datetime | None = None


@strawberry.input
class CreateDetectorInput:
    series_id: strawberry.ID
    kind: str = "ensemble"
    params: JSON | None = None
    benchmark_id: strawberry.ID | None = None
    threshold: float = 0.5
    severity: str = "medium"
    enabled: bool = True


@strawberry.input
class UpdateDetectorInput:
    kind: str | None = strawberry.UNSET
    params: JSON | None = strawberry.UNSET
    benchmark_id: strawberry.ID | None = strawberry.UNSET
    threshold: float | None = strawberry.UNSET
    severity: str | None = strawberry.UNSET
    enabled: bool | None = strawberry.UNSET


def _in_scope(model, actor: Actor, value, field: str):
    """A referenced object of the caller's organization; anything else is invalid input."""
    if value is None:
        return None
    text = str(value)
    obj = model.objects.for_actor(actor).filter(pk=int(text)).first() if text.isdigit() and len(text) <= 18 else None
    if obj is None:
        raise InvalidError(f"Unknown {model._meta.verbose_name} {value}.", details={field: ["Not found."]})
    return obj


def _checked(data: dict) -> dict:
    problems = {}
    for name in ("window_size", "step"):
        if data.get(name) is not None and not 1 <= data[name] <= 10**12:
            problems[name] = ["Between 1 and 10**12 milliseconds."]
    if "severity" in data and data["severity"] not in ("low", "medium", "high", "critical"):
        problems["severity"] = ["Choose one of low, medium, high, critical."]
    if len(data.get("metrics") or "") > 8000:
        problems["metrics"] = ["At most 8000 characters."]
    if problems:
        raise InvalidError("Invalid rule; see details.", details=problems)
    return data


def _history(given: dict) -> dict:
    """{run_on_history, start} of a rule input (the other fields are the rule's)."""
    return {"run_on_history": bool(given.get("run_on_history")), "start": given.get("history_start")}


def _rule_input(actor: Actor, given: dict, base: Rule | None = None) -> rule_services.RuleInput:
    data = {f: getattr(base, f) for f in rule_services.RuleInput.__dataclass_fields__} if base else {}
    given = {k: v for k, v in given.items() if k not in ("run_on_history", "history_start")}
    for key, value in given.items():
        if key == "series_id":
            data["series"] = _in_scope(Series, actor, value, "series")
            if value is not None and "watchlist_id" not in given:
                data["watchlist"] = None
        elif key == "watchlist_id":
            data["watchlist"] = _in_scope(Watchlist, actor, value, "watchlist")
            if value is not None and "series_id" not in given:
                data["series"] = None
        else:
            data[key] = value
    return rule_services.RuleInput(**_checked(data))


def _window(start: datetime, end: datetime) -> dict:
    if end <= start:
        raise InvalidError("end must be after start.", details={"end": ["end must be after start."]})
    return {"start": start, "end": end}


def _detector_fields(actor: Actor, given: dict) -> dict:
    fields = {k: v for k, v in given.items() if k not in ("series_id", "benchmark_id")}
    if "series_id" in given:
        fields["series"] = _in_scope(Series, actor, given["series_id"], "series")
    if "benchmark_id" in given:
        fields["benchmark"] = _in_scope(Series, actor, given["benchmark_id"], "benchmark")
    if fields.get("params") is None and "params" in fields:
        fields["params"] = {}
    if "threshold" in fields and not 0.0 <= (fields["threshold"] or 0.0) <= 1.0:
        raise InvalidError("threshold must be within [0, 1].", details={"threshold": ["Between 0 and 1."]})
    return fields


@strawberry.type
class DetectionMutation:
    @strawberry_django.mutation(handle_django_errors=False)
    def create_rule(self, info: strawberry.Info, input: CreateRuleInput) -> RuleResult:
        actor = actor_of(info)
        return input_errors(lambda: history_services.save_rule(actor=actor, data=_rule_input(actor, vars(input)),
                                                               **_history(vars(input))))

    @strawberry_django.mutation(handle_django_errors=False)
    def update_rule(self, info: strawberry.Info, id: strawberry.ID, input: UpdateRuleInput) -> RuleResult:
        actor = actor_of(info)
        rule = get_for_actor(Rule.objects.all(), actor, id, "change")
        return input_errors(lambda: history_services.save_rule(
            actor=actor, data=_rule_input(actor, given(input), rule), rule=rule, **_history(given(input))))

    @strawberry_django.mutation(handle_django_errors=False)
    def delete_rule(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        actor = actor_of(info)
        rule_services.delete_rule(actor=actor, rule=get_for_actor(Rule.objects.all(), actor, id, "change"))
        return id

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Runs a saved rule over [start, end) of stored history.")
    def backtest_rule(self, info: strawberry.Info, id: strawberry.ID, start: datetime,
                      end: datetime) -> BacktestResult:
        actor = actor_of(info)
        rule = get_for_actor(Rule.objects.all(), actor, id)
        return input_errors(lambda: BacktestType.from_result(
            rule_services.backtest(actor=actor, rule=rule, **_window(start, end))))

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Backtests an unsaved rule over [start, end); nothing is stored.")
    def dry_run_rule(self, info: strawberry.Info, input: CreateRuleInput, start: datetime,
                     end: datetime) -> BacktestResult:
        actor = actor_of(info)

        def run():
            window = _window(start, end)
            data = _rule_input(actor, vars(input))
            rule_services.check_target(actor, data)
            rule = Rule(organization_id=actor.organization_id, **vars(data))
            return BacktestType.from_result(rule_services.backtest(actor=actor, rule=rule, **window))
        return input_errors(run)

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Labels an anomaly: confirmed, expected, false_alarm or new_trend.")
    def label_anomaly(self, info: strawberry.Info, id: strawberry.ID, label: str) -> AnomalyResult:
        actor = actor_of(info)
        get_for_actor(Anomaly.objects.all(), actor, id, "change")
        if label not in ("confirmed", "expected", "false_alarm", "new_trend"):
            return InputError(code="invalid", message=f"Unknown label '{label}'.", fields=[])
        return anomaly_services.label_anomaly(actor=actor, anomaly_id=id, label=label)

    @strawberry_django.mutation(handle_django_errors=False)
    def create_detector(self, info: strawberry.Info, input: CreateDetectorInput) -> DetectorResult:
        actor = actor_of(info)
        return input_errors(lambda: detector_services.save_detector(
            actor=actor, detector=Detector(**_detector_fields(actor, vars(input)))))

    @strawberry_django.mutation(handle_django_errors=False, description="Changing kind, params or benchmark "
                                                                        "marks the detector for retraining.")
    def update_detector(self, info: strawberry.Info, id: strawberry.ID, input: UpdateDetectorInput) -> DetectorResult:
        actor = actor_of(info)
        detector = get_for_actor(Detector.objects.all(), actor, id, "change")

        def update():
            for field, value in _detector_fields(actor, given(input)).items():
                setattr(detector, field, value)
            return detector_services.save_detector(actor=actor, detector=detector)
        return input_errors(update)

    @strawberry_django.mutation(handle_django_errors=False)
    def delete_detector(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        actor = actor_of(info)
        detector_services.delete_detector(actor=actor, detector=get_for_actor(Detector.objects.all(), actor, id,
                                                                              "change"))
        return id

    @strawberry_django.mutation(handle_django_errors=False, description="Queues training (default window: the "
                                                                        "last 90 days); returns the run.")
    def train_detector(self, info: strawberry.Info, detector_id: strawberry.ID, start: datetime | None = None,
                       end: datetime | None = None, run_on_history: bool = False,
                       history_start: datetime | None = None) -> TrainingRunResult:
        actor = actor_of(info)
        detector = get_for_actor(Detector.objects.all(), actor, detector_id, "change")

        def train():
            if start and end:
                _window(start, end)
            run = history_services.train(actor=actor, detector=detector, start=start, end=end,
                                         run_on_history=run_on_history, history_start=history_start)
            run.refresh_from_db()
            return run
        return input_errors(train)

    @strawberry_django.mutation(handle_django_errors=False, description="Runs a saved rule over its series' "
                                "stored history (from start, default the first point) as background jobs.")
    def run_rule_on_history(self, info: strawberry.Info, id: strawberry.ID,
                            start: datetime | None = None) -> HistoryRunsResult:
        actor = actor_of(info)
        rule = get_for_actor(Rule.objects.all(), actor, id, "change")
        return input_errors(lambda: HistoryRunListType(
            runs=history_services.request_for_rule(actor=actor, rule=rule, start=start)))

    @strawberry_django.mutation(handle_django_errors=False, description="Runs a detector's active model over "
                                "the series' stored history as a background job.")
    def run_detector_on_history(self, info: strawberry.Info, id: strawberry.ID,
                                start: datetime | None = None) -> HistoryRunsResult:
        actor = actor_of(info)
        detector = get_for_actor(Detector.objects.all(), actor, id, "change")

        def run():
            found = history_services.request_for_detector(actor=actor, detector=detector, start=start)
            return HistoryRunListType(runs=[found] if found else [])
        return input_errors(run)

    @strawberry_django.mutation(handle_django_errors=False, description="Makes this model version the active one.")
    def activate_model_version(self, info: strawberry.Info, id: strawberry.ID) -> ModelVersionType:
        actor = actor_of(info)
        version = get_for_actor(ModelVersion.objects.defer("artifact", "baseline"), actor, id, "change")
        return detector_services.activate_version(actor=actor, version=version)
