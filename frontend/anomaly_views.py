"""The Anomalies page: the organization's anomalies newest first, filtered, paged, live, each with
its sentence and one-click feedback; and each anomaly's own page with the chart around it."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from detection.models import SEVERITY_RANK, Anomaly, Detector, Feedback, Rule, Severity
from detection.services.anomalies import filter_anomalies
from detection.services.evaluation import event_gap
from detection.services.explain import explain, source_name
from watchlists.models import Series, Watchlist

from . import series_data
from .pages import org_page
from .timezones import display_zone, local, zone_label

PAGE_SIZE = 50
# Formatted here: Django's |date would convert an aware time back to the site's zone (UTC).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
FEEDBACK_CHOICES = [("", "any feedback"), ("none", "no feedback yet"), *Feedback.choices]


class AnomalyFilterForm(forms.Form):
    watchlist = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Watchlist")
    series = forms.TypedChoiceField(required=False, coerce=int, empty_value=None, label="Series")
    source = forms.ChoiceField(required=False, label="Source")
    severity = forms.ChoiceField(required=False, choices=[("", "any severity"), *Severity.choices], label="Severity")
    feedback = forms.ChoiceField(required=False, choices=FEEDBACK_CHOICES, label="Feedback")
    start = forms.DateTimeField(required=False, label="From", help_text="a date (UTC) or an ISO time with its offset",
                                widget=forms.TextInput(attrs={"placeholder": "2013-10-07"}))
    end = forms.DateTimeField(required=False, label="Until", widget=forms.TextInput(attrs={"placeholder": "2013-10-08"}))

    def __init__(self, *args, actor, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["watchlist"].choices = [("", "every watchlist"), *Watchlist.objects.for_actor(actor)
                                            .order_by("name").values_list("pk", "name")]
        self.fields["series"].choices = [("", "every series"), *Series.objects.for_actor(actor)
                                         .order_by("symbol").values_list("pk", "symbol")]
        rules = [(f"rule:{pk}", f"rule {name}") for pk, name in Rule.objects.for_actor(actor).order_by("name")
                 .values_list("pk", "name")]
        detectors = [(f"detector:{d.pk}", f"detector {d.kind} on {d.series.symbol}")
                     for d in Detector.objects.for_actor(actor).select_related("series").order_by("pk")]
        self.fields["source"].choices = [("", "every source"), ("rule", "any rule"), ("detector", "any detector"),
                                         *rules, *detectors]


def rows(anomalies) -> list[dict]:
    """What a table row shows: the time on the series' clock, what fired by name, the sentence."""
    return [{"anomaly": a, "local": local(a.ts, a.series).strftime(TIME_FORMAT), "zone": zone_label(a.series), "source": source_name(a),
             "explanation": explain(a)} for a in anomalies]


def incidents(rows_: list[dict]) -> list[dict]:
    """The page's rows as incidents: anomalies of one series from one source (rule or detector)
    with no more than a short gap between them (ANOMALY_GROUP_GAP_SECONDS, or three bars of a
    slower series) are one incident. AnomalyHub stores no incident for an anomaly itself (alert
    incidents belong to each person's subscription), so the grouping is drawn here, per page.
    Incidents keep the newest-first order of their newest anomaly."""
    groups: list[dict] = []
    open_: dict[tuple, dict] = {}
    for row in rows_:
        a = row["anomaly"]
        key = (a.series_id, a.source)
        gap = event_gap(a.series)
        group = open_.get(key)
        if group is None or group["rows"][-1]["anomaly"].ts - a.ts > gap:
            group = open_[key] = {"rows": [], "severity": a.severity}
            groups.append(group)
        group["rows"].append(row)
        if SEVERITY_RANK[a.severity] > SEVERITY_RANK[group["severity"]]:
            group["severity"] = a.severity
    for group in groups:
        newest, oldest = group["rows"][0]["local"], group["rows"][-1]["local"]
        same_day = newest[:10] == oldest[:10]
        group["span"] = f"{oldest} – {newest[11:] if same_day else newest}"
    return groups


@org_page
def anomaly_list(request, actor):
    form = AnomalyFilterForm(request.GET or None, actor=actor)
    qs = Anomaly.objects.for_actor(actor).select_related("series", "rule", "detector").order_by("-ts", "-pk")
    filters = {}
    if form.is_valid():
        filters = {k: v for k, v in form.cleaned_data.items() if v not in (None, "")}
        qs = filter_anomalies(qs, **filters)
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    # New anomalies join the first page live unless the filters could exclude them (a time range
    # that ended, a label they cannot have yet); the script checks severity and source itself.
    live = page.number == 1 and "end" not in filters and filters.get("feedback", "none") == "none"
    watched = Series.objects.for_actor(actor)
    if "series" in filters:
        watched = watched.filter(pk=filters["series"])
    if "watchlist" in filters:
        watched = watched.filter(watchlists=filters["watchlist"])
    zones = {s.pk: display_zone(s) for s in watched.order_by("pk")[:500]} if live else {}
    return render(request, "frontend/anomalies.html", {
        "form": form, "page": page, "incidents": incidents(rows(page.object_list)), "query": query.urlencode(),
        "live_series": ",".join(map(str, zones)), "zones": zones, "filtered": bool(filters), "live": live,
        "can_change": actor.can("change"), "severity": filters.get("severity", ""),
        "source": filters.get("source", ""), "incident_gap": _duration(settings.ANOMALY_GROUP_GAP_SECONDS)})


def _duration(seconds: int) -> str:
    """300 -> "5 minutes" (or three bars of a slower series, as incidents() counts)."""
    minutes, rest = divmod(seconds, 60)
    text = f"{minutes} minute{'s' if minutes != 1 else ''}" if minutes and not rest else f"{seconds} seconds"
    return f"{text} (or three bars of a slower series)"


@org_page
def anomaly_detail(request, actor, anomaly_id):
    anomaly = get_object_or_404(Anomaly.objects.for_actor(actor).select_related("series", "rule", "detector"),
                                pk=anomaly_id)
    return render(request, "frontend/anomaly.html", {
        "anomaly": anomaly, "labels": Feedback.choices, "can_change": actor.can("change"),
        "explanation": explain(anomaly), "source": source_name(anomaly), "local": local(anomaly.ts, anomaly.series).strftime(TIME_FORMAT),
        "zone": zone_label(anomaly.series), "chart_data": series_data.window_chart(anomaly)})
