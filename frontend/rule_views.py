"""Rules: list with engine stats, an editor that validates as you type and previews a backtest on
the chart before saving, enable/disable."""

from datetime import datetime, timedelta

import numpy as np
from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from anomalyhub.lib.errors import ServiceError
from detection.models import Rule
from detection.services import history as history_services
from detection.services import rules as rule_services
from watchlists.models import Series, Watchlist

from . import series_data
from .forms import RuleForm
from .pages import attempt, org_page
from .timezones import regular_hours


def _targets(actor):
    return (Series.objects.for_actor(actor).order_by("symbol"), Watchlist.objects.for_actor(actor).order_by("name"))


def _form(actor, data=None, initial=None):
    series, watchlists = _targets(actor)
    return RuleForm(data, initial=initial, series=series, watchlists=watchlists)


def _target(actor, value: str):
    kind, _, pk = value.partition(":")
    model = Series if kind == "series" else Watchlist
    return kind, get_object_or_404(model.objects.for_actor(actor), pk=pk)


@org_page
def rule_list(request, actor):
    rules = Rule.objects.for_actor(actor).select_related("series", "watchlist").order_by("name")
    return render(request, "frontend/rules.html", {
        "rules": [(r, rule_services.rule_stats(r)) for r in rules], "can_change": actor.can("change")})


@org_page
def rule_edit(request, actor, rule_id=None):
    rule = get_object_or_404(Rule.objects.for_actor(actor), pk=rule_id) if rule_id else None
    initial = {"target": request.GET.get("target", "")}
    if rule is not None:
        initial = {"name": rule.name, "metrics": rule.metrics, "window_size": rule.window_size, "step": rule.step,
                   "severity": rule.severity, "enabled": rule.enabled,
                   "target": f"series:{rule.series_id}" if rule.series_id else f"watchlist:{rule.watchlist_id}"}
    form = _form(actor, request.POST or None, initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        kind, target = _target(actor, data["target"])
        try:
            rule = history_services.save_rule(actor=actor, rule=rule, run_on_history=data["run_on_history"],
                                              data=rule_services.RuleInput(
                name=data["name"], metrics=data["metrics"], window_size=data["window_size"], step=data["step"],
                severity=data["severity"], enabled=data["enabled"],
                series=target if kind == "series" else None, watchlist=target if kind == "watchlist" else None))
        except ServiceError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _saved_message(rule))
            return redirect(f"/series/{rule.series_id}/" if rule.series_id else "frontend:rules")
    hours = regular_hours(rule.series) if rule is not None and rule.series_id else None
    return render(request, "frontend/rule_form.html", {"form": form, "rule": rule, "hours": hours})


def _saved_message(rule: Rule) -> str:
    runs = rule.queued_history_runs
    if not runs:
        return f"Rule {rule.name} saved; it watches every new point."
    points = sum(r.points_total for r in runs)
    return (f"Rule {rule.name} saved; it watches every new point and is running over {points:,} stored points "
            "in the background: its anomalies appear as it finds them.")


@require_POST
@org_page
def rule_validate(request, actor):
    """What the editor shows while typing: compile errors with their position in the text."""
    value = request.POST.get("target", "")
    kinds = []
    if value.startswith("series:"):
        kinds = list(Series.objects.for_actor(actor).filter(pk=value[7:] or 0).values_list("kind", flat=True))
    elif value.startswith("watchlist:"):
        kinds = sorted(set(Series.objects.for_actor(actor).filter(watchlists=value[10:] or 0)
                           .values_list("kind", flat=True)))
    window = request.POST.get("window_size") or None
    step = request.POST.get("step") or None
    try:
        rule_services.compile_plan(metrics=request.POST.get("metrics", ""), kinds=kinds,
                                   window_size=int(window) if window and window.isdigit() else None,
                                   step=int(step) if step and step.isdigit() else None)
    except ServiceError as exc:
        errors = [e if isinstance(e, dict) else {"message": str(e)} for v in exc.details.values() for e in v]
        return JsonResponse({"ok": False, "message": exc.message, "errors": errors})
    return JsonResponse({"ok": True, "columns": rule_services.columns_for(kinds)})


@require_POST
@org_page
def rule_preview(request, actor):
    """The backtest preview: the anomalies the unsaved rule would have found over the target's latest
    day, drawn on that series' chart (a watchlist target previews its first series)."""
    form = _form(actor, request.POST)
    form.fields["name"].required = False
    if not form.is_valid():
        errors = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        return JsonResponse({"ok": False, "message": f"Fix the form first ({errors})."})
    data = form.cleaned_data
    kind, target = _target(actor, data["target"])
    series = target if kind == "series" else Series.objects.for_actor(actor).filter(watchlists=target).first()
    if series is None or series.last_point_at is None:
        return JsonResponse({"ok": False, "message": "No stored data to preview on yet; replay or send some first."})
    rule = Rule(organization_id=actor.organization_id, name=data["name"] or "preview", metrics=data["metrics"],
                window_size=data["window_size"], step=data["step"], severity=data["severity"],
                series=target if kind == "series" else None, watchlist=target if kind == "watchlist" else None)
    view = series_data.latest_day(series, max_anomalies=0)
    end = series.last_point_at + timedelta(microseconds=1)
    try:
        result = rule_services.backtest(actor=actor, rule=rule, start=end - timedelta(days=1), end=end)
    except ServiceError as exc:
        return JsonResponse({"ok": False, "message": exc.message})
    chart = series_data.chart_data(view)
    found = [a for a in result["anomalies"] if a["series"] == series.pk]
    times = series_data.on_clock(series, np.array([int(datetime.fromisoformat(a["ts"]).timestamp()) for a in found],
                                                  dtype=np.int64))
    # Preview marks are not stored: no id to open (a string id tells the chart not to link them).
    chart["anomalies"] = [{"time": t, "id": f"preview-{i}", "text": a["text"], "severity": data["severity"]}
                          for i, (t, a) in enumerate(zip(times, found, strict=True))]
    return JsonResponse({"ok": True, "symbol": series.symbol, "count": result["count"],
                         "rows": result["rows_processed"], "truncated": result["truncated"], "chart": chart})


@require_POST
@org_page
def rule_toggle(request, actor, rule_id):
    rule = get_object_or_404(Rule.objects.for_actor(actor), pk=rule_id)
    data = rule_services.RuleInput(
        name=rule.name, metrics=rule.metrics, window_size=rule.window_size, step=rule.step,
        round_time=rule.round_time, series=rule.series, watchlist=rule.watchlist, severity=rule.severity,
        enabled=not rule.enabled)
    attempt(request, lambda: rule_services.save_rule(actor=actor, rule=rule, data=data),
            lambda saved: f"Rule {saved.name} {'enabled' if saved.enabled else 'disabled'}.")
    return redirect("frontend:rules")
