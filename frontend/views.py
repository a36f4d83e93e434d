"""Server-rendered pages. Thin: resolve the actor, call a service, render."""

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts import services as account_services
from accounts.models import ApiKey
from accounts.tenancy import SESSION_ORG_KEY, actor_for_request, actor_for_user
from anomalyhub.lib.errors import ServiceError
from detection.models import Anomaly, Feedback, HistoryRun, Rule
from detection.services.anomalies import label_anomaly
from detection.services.explain import explain
from watchlists.models import Series, Watchlist
from watchlists.store.writer import VALUE_COLUMNS

from . import replays, series_data
from .forms import ApiKeyForm, OrganizationForm, ReplayForm
from .pages import attempt, org_page
from .timezones import display_zone, regular_hours, zone_label
from .watchlist_views import series_rows


@org_page
def home(request, actor):
    watchlists = Watchlist.objects.for_actor(actor).order_by("name").prefetch_related("items__series")
    rows = [(wl, series_rows(actor, [item.series for item in wl.items.all()])) for wl in watchlists]
    unlisted = series_rows(actor, list(Series.objects.for_actor(actor).filter(watchlists__isnull=True)
                                       .order_by("symbol")))
    live_series = sorted({v.series.pk for _, views in rows for v in views} | {v.series.pk for v in unlisted})
    return render(request, "frontend/home.html", {"watchlists": rows, "unlisted": unlisted,
                                                  "live_series": live_series, "can_change": actor.can("change")})


@org_page
def series_detail(request, actor, series_id):
    series = get_object_or_404(Series.objects.for_actor(actor), pk=series_id)
    span = request.GET.get("range", "1d")
    span = span if span in series_data.RANGES else "1d"
    view = series_data.latest_day(series, resolution=request.GET.get("resolution", "1m"),
                                  days=series_data.RANGES[span])
    if request.GET.get("format") == "chart":  # the chart's data alone: redrawn after an import
        return JsonResponse(series_data.chart_data(view))
    return render(request, "frontend/series.html", {
        "view": view, "chart_data": series_data.chart_data(view), "resolutions": series_data.RESOLUTIONS,
        "ranges": series_data.RANGES, "span": span,
        "tz": display_zone(series), "zone": zone_label(series), "hours": regular_hours(series),
        "anomalies": _explained(view.anomalies[:SERIES_PAGE_ANOMALIES]), "replay_form": ReplayForm(series=series),
        "replay": replays.progress(series), "can_ingest": actor.can("ingest"), "can_change": actor.can("change"),
        "csv_columns": ",".join(("timestamp", *VALUE_COLUMNS[series.kind])),
        "rules": Rule.objects.for_actor(actor).filter(series=series).order_by("name"),
        "history_runs": _recent_history(actor, series)})


SERIES_PAGE_ANOMALIES = 20  # the rest on the Anomalies page, filtered to the series


def _explained(anomalies):
    for a in anomalies:
        a.explanation = explain(a)
    return anomalies


def _recent_history(actor, series):
    """History runs of the series still working, or finished in the last hour (their result)."""
    since = timezone.now() - timedelta(hours=1)
    return list(HistoryRun.objects.for_actor(actor).filter(series=series)
                .filter(Q(status__in=["queued", "running"]) | Q(finished_at__gte=since))
                .select_related("rule", "detector").defer("snapshot").order_by("-pk")[:5])


@org_page
def series_replay(request, actor, series_id):
    """GET: the replay's progress as JSON (the page polls it); POST: start or stop a replay."""
    series = get_object_or_404(Series.objects.for_actor(actor), pk=series_id)
    if request.method != "POST":
        state = replays.progress(series)
        return JsonResponse({k: state.get(k) for k in ("state", "sent", "total", "file", "error")})
    try:
        if "stop" in request.POST:
            replays.stop_replay(actor=actor, series=series)
            messages.info(request, "Stopping the replay after its current batch.")
        else:
            form = ReplayForm(request.POST, series=series)
            if not form.is_valid():
                raise ServiceError("Choose a demo file and a speed.")
            replays.start_replay(actor=actor, series=series, file_key=form.cleaned_data["file"],
                                 speed=form.cleaned_data["speed"])
            messages.success(request, "Replay started: points appear on the chart as they are stored.")
    except ServiceError as exc:
        messages.error(request, exc.message)
    return redirect("frontend:series", series.pk)


@require_POST
@org_page
def anomaly_feedback(request, actor, anomaly_id):
    anomaly = get_object_or_404(Anomaly.objects.for_actor(actor), pk=anomaly_id)
    label = request.POST.get("label", "")
    if label not in Feedback.values:
        messages.error(request, f"Unknown label '{label}'; use one of the buttons.")
    else:
        attempt(request, lambda: label_anomaly(actor=actor, anomaly_id=anomaly.pk, label=label),
                f"Marked as {Feedback(label).label.lower()}.")
    back = request.POST.get("next", "")
    if back and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect("frontend:anomaly", anomaly.pk)


@login_required
def org_new(request):
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        org = account_services.create_organization(user=request.user, name=form.cleaned_data["name"])
        request.session[SESSION_ORG_KEY] = org.pk
        messages.success(request, f"Organization {org.name} created.")
        return redirect("frontend:home")
    return render(request, "frontend/org_new.html", {"form": form})


@login_required
@require_POST
def org_switch(request, org_id):
    if actor_for_user(request.user, org_id).organization_id is not None:
        request.session[SESSION_ORG_KEY] = int(org_id)
    return redirect("frontend:home")


@login_required
def api_keys(request):
    actor = actor_for_request(request)
    form = ApiKeyForm(request.POST or None)
    new_key = None
    if request.method == "POST" and form.is_valid():
        try:
            _, new_key = account_services.create_api_key(actor=actor, **form.cleaned_data)
        except ServiceError as exc:
            messages.error(request, exc.message)
    keys = ApiKey.objects.for_actor(actor, "manage").order_by("-created_at")
    return render(request, "frontend/api_keys.html",
                  {"form": form, "keys": keys, "new_key": new_key, "can_manage": actor.can("manage")})


@login_required
def accept_invitation(request):
    token = request.GET.get("token") or request.POST.get("token", "")
    if request.method == "POST":
        try:
            membership = account_services.accept_invitation(user=request.user, token=token)
        except ServiceError as exc:
            messages.error(request, exc.message)
        else:
            request.session[SESSION_ORG_KEY] = membership.organization_id
            return redirect("frontend:home")
    return render(request, "frontend/accept_invitation.html", {"token": token})
