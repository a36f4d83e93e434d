"""Server-rendered pages. Thin: resolve the actor, call a service, render."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from accounts import services as account_services
from accounts.errors import ServiceError
from accounts.models import ApiKey
from accounts.tenancy import SESSION_ORG_KEY, actor_for_request, actor_for_user
from watchlists import services as watchlist_services
from watchlists.models import Series, Watchlist

from . import charts, series_data
from .forms import ApiKeyForm, OrganizationForm


@login_required
def home(request):
    actor = actor_for_request(request)
    if actor.organization_id is None:
        return redirect("frontend:org-new")
    watchlists = Watchlist.objects.for_actor(actor).order_by("name").prefetch_related("items__series")
    rows = [(wl, [_sparkline(series_data.latest_day(item.series, max_anomalies=0))
                  for item in wl.items.all()]) for wl in watchlists]
    unlisted = Series.objects.for_actor(actor).filter(watchlists__isnull=True).order_by("symbol")
    unlisted_views = [_sparkline(series_data.latest_day(s, max_anomalies=0)) for s in unlisted]
    live_series = sorted({v.series.pk for _, views in rows for v in views} | {v.series.pk for v in unlisted_views})
    return render(request, "frontend/home.html", {"watchlists": rows, "unlisted": unlisted_views,
                                                  "live_series": live_series})


def _sparkline(view):
    view.path = charts.line_path(view.closes, 160, 36)
    return view


@login_required
def series_detail(request, series_id):
    actor = actor_for_request(request)
    series = get_object_or_404(Series.objects.for_actor(actor), pk=series_id)
    view = series_data.latest_day(series, resolution=request.GET.get("resolution", "1m"))
    return render(request, "frontend/series.html", {
        "view": view, "chart_data": _chart_data(view), "resolutions": series_data.RESOLUTIONS,
        "tz": watchlist_services.series_timezone(series)})


def _chart_data(view) -> dict:
    """What the chart script draws: bars (epoch seconds, OHLC) and anomaly markers."""
    def clean(values):
        return [None if v != v else round(v, 6) for v in values.tolist()]

    seconds = (view.times_us // 1_000_000).tolist()
    bars = ({"time": seconds, **{k: clean(v) for k, v in view.ohlc.items()}} if view.ohlc
            else {"time": seconds, "close": clean(view.closes)})
    return {"series": view.series.pk, "kind": view.series.kind, "resolution": view.resolution, "bars": bars,
            "anomalies": [{"time": int(a.ts.timestamp()), "id": a.pk, "text": a.text, "severity": a.severity}
                          for a in view.anomalies]}


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
