"""Rules: validation (with positions), CRUD, backtests and engine statistics."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db import transaction

from accounts.tenancy import Actor
from anomalyhub.lib import tenant_slots
from anomalyhub.lib.errors import InvalidError
from watchlists.models import Series, SeriesKind, Watchlist
from watchlists.store import reader
from watchlists.store.timeconv import to_us
from watchlists.store.writer import VALUE_COLUMNS

from ..models import Rule, RuleState
from ..rules import RuleEngine, RuleSyntaxError, compile_rule
from ..rules.alignment import first_window_end
from ..rules.engine import WindowLimitExceeded

BACKTEST_MAX_ROWS = settings.BACKTEST_MAX_ROWS
BACKTEST_MAX_LISTED = settings.BACKTEST_MAX_LISTED


class RuleInvalid(InvalidError):
    code = "invalid_rule"


def columns_for(kinds) -> list[str]:
    """Columns every series of these kinds has (a watchlist rule must work on all of them)."""
    sets = [set(VALUE_COLUMNS[k]) for k in kinds] or [set(VALUE_COLUMNS[k]) for k in SeriesKind.values]
    common = set.intersection(*sets) if kinds else set.union(*sets)
    return sorted(common)


def target_series(rule: Rule) -> list[Series]:
    if rule.series_id:
        return [rule.series]
    return list(Series.objects.filter(watchlists=rule.watchlist_id, organization_id=rule.organization_id))


def compile_plan(*, metrics, kinds, window_size=None, step=None, round_time=True):
    """The engine plan for a rule definition, or RuleInvalid naming the problem and its position."""
    try:
        return compile_rule(metrics, columns_for(kinds), window_size=window_size, step=step,
                            round_time=round_time, precision="ms")
    except RuleSyntaxError as exc:
        detail = {"message": exc.message, "position": exc.position, "metric_index": exc.metric_index}
        field = "metrics" if exc.position is not None or exc.metric_index is not None else "window_size"
        raise RuleInvalid(f"The rule cannot be compiled: {exc}", details={field: [detail]}) from None


def check_window_limits(window_size: int | None, step: int | None) -> None:
    """Refuses a rule whose rows would each fall in more than RULE_MAX_WINDOWS_PER_POINT windows:
    every such window is computed (and may fire) once per row, whatever the gap between rows."""
    if not window_size or not step:
        return
    limit = settings.RULE_MAX_WINDOWS_PER_POINT
    if window_size / step > limit:
        message = (f"windowSize / step is {window_size / step:,.0f}: each point would fall in that many windows, "
                   f"over the limit of {limit:,} (RULE_MAX_WINDOWS_PER_POINT). Use a larger step or a smaller "
                   "windowSize.")
        raise RuleInvalid(message, details={"window_size": [{"message": message, "limit": limit,
                                                             "setting": "RULE_MAX_WINDOWS_PER_POINT"}]})


def plan_for(rule: Rule, series_list=None):
    kinds = sorted({s.kind for s in (series_list if series_list is not None else target_series(rule))})
    return compile_plan(metrics=rule.metrics, kinds=kinds, window_size=rule.window_size, step=rule.step,
                        round_time=rule.round_time)


@dataclass
class RuleInput:
    name: str
    metrics: str
    window_size: int | None = None
    step: int | None = None
    round_time: bool = True
    series: Series | None = None
    watchlist: Watchlist | None = None
    severity: str = "medium"
    enabled: bool = True


def check_target(actor: Actor, data: RuleInput) -> list[Series]:
    if (data.series is None) == (data.watchlist is None):
        raise RuleInvalid("A rule watches exactly one series or one watchlist.",
                          details={"series": ["Give series or watchlist, not both or neither."]})
    target = data.series or data.watchlist
    if target.organization_id != actor.organization_id:  # callers resolve ids in scope; defensive
        raise RuleInvalid("Unknown series or watchlist.")
    if data.series is not None:
        return [data.series]
    return list(Series.objects.filter(watchlists=data.watchlist))


def definition(rule: Rule) -> tuple:
    """What decides a rule's anomalies: a change resets its state and replaces its history."""
    return (rule.metrics, rule.window_size, rule.step, rule.round_time, rule.series_id, rule.watchlist_id)


@transaction.atomic
def save_rule(*, actor: Actor, data: RuleInput, rule: Rule | None = None) -> Rule:
    """Creates or replaces a rule after compiling it; a changed definition resets engine state."""
    actor.require("change")
    series_list = check_target(actor, data)
    check_window_limits(data.window_size, data.step)
    compile_plan(metrics=data.metrics, kinds=sorted({s.kind for s in series_list}), window_size=data.window_size,
                 step=data.step, round_time=data.round_time)
    creating = rule is None
    rule = rule or Rule(organization_id=actor.organization_id, created_by=actor.credited_user)
    before = definition(rule)
    for field, value in vars(data).items():
        setattr(rule, field, value)
    rule.name = rule.name.strip()
    if not rule.name:
        raise RuleInvalid("A rule needs a name.", details={"name": ["This field is required."]})
    changed = before != definition(rule)
    if changed and not creating:
        rule.origin_time_ms = None
        RuleState.objects.filter(rule=rule).delete()
    rule.save()
    return rule


def delete_rule(*, actor: Actor, rule: Rule) -> None:
    actor.require("change")
    rule.delete()


def series_batch(series: Series, start_us: int, end_us: int, limit: int | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Raw points as (times in µs, engine columns: "time" in ms plus the kind's value columns)."""
    data = reader.read_raw(series.pk, series.kind, start_us, end_us, limit)
    return data["ts"], engine_columns(series.kind, data)


def engine_columns(kind: str, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A rule engine's columns of raw points read from the store: "time" in ms and the kind's values."""
    batch = {c: data[c] for c in VALUE_COLUMNS[kind]}
    batch["time"] = data["ts"] // 1000
    return batch


def align(engine: RuleEngine, first_time_ms: int) -> None:
    """Fixes the window grid to start from the rule's first point, so all its series share it."""
    plan = engine.plan
    if plan.step:
        engine._state.origin = first_window_end(first_time_ms, plan.precision, plan.step, plan.round_time)


def backtest(*, actor: Actor, rule: Rule, start: datetime, end: datetime) -> dict:
    """Runs a rule (saved or not) over stored history with a fresh engine; stores nothing. At most
    ORG_MAX_BACKTESTS run at once per organization; each series' run computes at most
    RULE_MAX_WINDOWS_PER_CALL windows over all its series (counted before any is built)."""
    actor.require("view")
    check_window_limits(rule.window_size, rule.step)
    series_list = target_series(rule)
    plan = plan_for(rule, series_list)
    with tenant_slots.slot("backtest", actor.organization_id, settings.ORG_MAX_BACKTESTS, "ORG_MAX_BACKTESTS"):
        try:
            return _backtest(rule, plan, series_list, start, end)
        except WindowLimitExceeded:
            limit = settings.RULE_MAX_WINDOWS_PER_CALL
            raise InvalidError(
                f"This backtest would compute more than {limit:,} windows, the limit of one backtest "
                "(RULE_MAX_WINDOWS_PER_CALL); nothing was computed past it. Backtest a shorter [start, end), "
                "fewer series, or use a larger step.", code="backtest_too_large",
                details={"limit": limit, "setting": "RULE_MAX_WINDOWS_PER_CALL"}) from None


def _backtest(rule: Rule, plan, series_list: list[Series], start: datetime, end: datetime) -> dict:
    start_us, end_us = to_us(start), to_us(end)
    anomalies, rows, per_series = [], 0, {}
    batches = {s.pk: series_batch(s, start_us, end_us, BACKTEST_MAX_ROWS + 1)[1] for s in series_list}
    firsts = [int(b["time"][0]) for b in batches.values() if len(b["time"])]
    truncated, budget = False, settings.RULE_MAX_WINDOWS_PER_CALL
    for series in series_list:
        batch = batches[series.pk]
        if len(batch["time"]) > BACKTEST_MAX_ROWS:
            truncated = True
            batch = {k: v[:BACKTEST_MAX_ROWS] for k, v in batch.items()}
        engine = RuleEngine(plan, max_windows=budget)
        if firsts:
            align(engine, min(firsts))
        outputs = engine.process(batch) if len(batch["time"]) else []
        budget -= engine.windows_computed
        rows += len(batch["time"])
        per_series[series.pk] = len(outputs)
        for out in outputs:
            if len(anomalies) < BACKTEST_MAX_LISTED:
                anomalies.append({"series": series.pk, "symbol": series.symbol,
                                  "ts": datetime.fromtimestamp(out.time / 1000, tz=start.tzinfo).isoformat(),
                                  "metric_index": out.metric_index, "text": out.metric_text,
                                  "observed": out.observed})
    total = sum(per_series.values())
    return {"rule": rule.pk, "start": start.isoformat(), "end": end.isoformat(), "rows_processed": rows,
            "count": total, "per_series": per_series, "anomalies": anomalies,
            "truncated": truncated or total > len(anomalies), "max_rows": BACKTEST_MAX_ROWS}


def rule_stats(rule: Rule) -> dict:
    """Seed 002's engine statistics, summed over the rule's series, with the per-series detail."""
    states = list(RuleState.objects.filter(rule=rule).order_by("series_id"))
    per_series = {s.series_id: {**s.stats, "snapshotMsgId": s.snapshot_msg_id,
                                "snapshotTimestamp": s.snapshot_at.isoformat() if s.snapshot_at else None,
                                "lastErrMsg": s.last_error} for s in states}
    errors = [s.last_error for s in states if s.last_error]
    snapped = [s for s in states if s.snapshot_at]
    latest = max(snapped, key=lambda s: s.snapshot_at) if snapped else None
    return {
        "name": rule.name, "status": "ERROR" if errors else ("OK" if rule.enabled else "DISABLED"),
        "lastErrMsg": errors[-1] if errors else "", "numGroups": len(states),
        "numRows": sum(s.stats.get("numRows", 0) for s in states),
        "numMetrics": _metric_count(rule), "metrics": rule.metrics,
        "snapshotMsgId": latest.snapshot_msg_id if latest else -1,
        "snapshotTimestamp": latest.snapshot_at.isoformat() if latest else None,
        "memoryUsed": sum(s.stats.get("memoryUsed", 0) for s in states),
        "windowSize": rule.window_size, "step": rule.step, "series": per_series,
    }


def _metric_count(rule: Rule) -> int:
    try:
        return len(plan_for(rule).metrics)
    except RuleInvalid:
        return 0
