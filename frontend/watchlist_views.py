"""Watchlists: create, edit (name, symbols), and the live table of their series."""

import operator
from datetime import datetime, time
from functools import reduce
from urllib.parse import urlencode

from django.contrib import messages
from django.db import transaction
from django.db.models import Count, Q
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from anomalyhub.lib.errors import ServiceError
from detection.models import Anomaly
from watchlists import services as watchlist_services
from watchlists.models import Series, Watchlist

from . import charts, series_data
from .forms import WatchlistForm
from .pages import org_page
from .timezones import local, zone_label, zone_of


def session_start(series: Series) -> datetime | None:
    """Midnight (on the series' clock) of the day of its latest point: its latest session, which for
    imported history is not today."""
    if series.last_point_at is None:
        return None
    day = local(series.last_point_at, series).date()
    return datetime.combine(day, time.min, tzinfo=zone_of(series))


def series_rows(actor, series_list) -> list:
    """One row per series: the latest day (last price, change, sparkline) and the anomalies of its
    latest session (the data's last day, not the wall clock's)."""
    starts = {s.pk: session_start(s) for s in series_list}
    wanted = [Q(series_id=pk, ts__gte=start) for pk, start in starts.items() if start is not None]
    counts = dict(Anomaly.objects.for_actor(actor).filter(reduce(operator.or_, wanted))
                  .values_list("series_id").annotate(n=Count("id"))) if wanted else {}
    rows = []
    for s in series_list:
        view = series_data.latest_day(s, max_anomalies=0)
        view.path = charts.line_path(view.closes, 160, 36)
        view.spark = charts.downsample(view.closes, 160)  # seeds the live redraw in live.js
        view.anomalies_today = counts.get(s.pk, 0)
        start = starts[s.pk]
        view.session_link = f"/anomalies/?{urlencode({'series': s.pk, 'start': start.isoformat()})}" \
            if start else f"/anomalies/?series={s.pk}"
        view.zone = zone_label(s)
        view.first = float(view.closes[0]) if len(view.closes) else None  # live.js computes the change from it
        rows.append(view)
    return rows


def _save(request, actor, form, watchlist=None):
    data = form.cleaned_data
    try:
        with transaction.atomic():
            found = Series.objects.for_actor(actor).filter(symbol__in=data["symbols"])
            by_symbol = {s.symbol: s for s in found}
            for symbol in data["symbols"]:
                if symbol not in by_symbol:
                    by_symbol[symbol] = watchlist_services.create_series(
                        actor=actor, symbol=symbol, kind=data["kind"], exchange=data["exchange"])
            return watchlist_services.save_watchlist(
                actor=actor, watchlist=watchlist, name=data["name"], description=data["description"],
                series_ids=[by_symbol[s].pk for s in data["symbols"]])
    except ServiceError as exc:
        for field, errors in (exc.details or {}).items():
            if field in form.fields and isinstance(errors, list):
                form.add_error(field, [str(e) for e in errors])
        form.add_error(None, exc.message)
        return None


@org_page
def watchlist_new(request, actor):
    form = WatchlistForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        watchlist = _save(request, actor, form)
        if watchlist is not None:
            messages.success(request, f"Watchlist {watchlist.name} created.")
            return redirect("frontend:watchlist", watchlist.pk)
    return render(request, "frontend/watchlist_form.html", {"form": form, "watchlist": None})


@org_page
def watchlist_edit(request, actor, watchlist_id):
    watchlist = get_object_or_404(Watchlist.objects.for_actor(actor), pk=watchlist_id)
    symbols = " ".join(i.series.symbol for i in watchlist.items.select_related("series").order_by("added_at"))
    form = WatchlistForm(request.POST or None, initial={
        "name": watchlist.name, "description": watchlist.description, "symbols": symbols})
    if request.method == "POST" and form.is_valid():
        if _save(request, actor, form, watchlist) is not None:
            messages.success(request, f"Watchlist {watchlist.name} saved.")
            return redirect("frontend:watchlist", watchlist.pk)
    return render(request, "frontend/watchlist_form.html", {"form": form, "watchlist": watchlist})


@require_POST
@org_page
def watchlist_delete(request, actor, watchlist_id):
    watchlist = get_object_or_404(Watchlist.objects.for_actor(actor), pk=watchlist_id)
    if not actor.can("change"):
        messages.error(request, "Your role cannot delete watchlists; ask an admin.")
        return redirect("frontend:watchlist", watchlist.pk)
    watchlist.delete()
    messages.success(request, f"Watchlist {watchlist.name} deleted; its series and their data remain.")
    return redirect("frontend:home")


@org_page
def watchlist_detail(request, actor, watchlist_id):
    watchlist = get_object_or_404(Watchlist.objects.for_actor(actor), pk=watchlist_id)
    series = [i.series for i in watchlist.items.select_related("series").order_by("series__symbol")]
    rows = series_rows(actor, series)
    return render(request, "frontend/watchlist.html", {
        "watchlist": watchlist, "rows": rows, "live_series": [s.pk for s in series],
        "can_change": actor.can("change")})
