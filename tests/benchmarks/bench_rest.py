"""A REST point read with and without accounts.api.base.PkLookup, in the same run: the point
reads' series lookup with its SQL compiled once, against DRF's stock get_object() (the for_actor()
queryset compiled per request), on GET /series/<id>/points/. PkLookup stays only while stock/with
is at least 1.10. (A serializer variant that built its fields once per class was measured here
too: 1.05-1.08 on GET /me/ and a page of 50 series, so it was removed.)

Each request goes through Django's whole stack in this process (middleware, authentication by API
key, throttling, DRF, rendering), timed as CPU time per request (median of interleaved batches).
A ratio is stock / with the speed-up: above 1 the speed-up saves that factor of the request."""

from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager

from django.core.cache import cache
from django.core.management import call_command
from django.test import Client
from rest_framework.generics import GenericAPIView

from accounts.models import ApiKey
from accounts.services import bootstrap_org
from accounts.tenancy import system_actor
from watchlists.api.views import SeriesViewSet
from watchlists.models import Series
from watchlists.services import create_series

from .harness import Row

ORG_NAME = "REST bench"
REQUESTS, BATCHES = 100, 5


class _StockLookup:
    """What SeriesViewSet.get_object does without PkLookup: DRF's own get_object()."""

    def get_or_404(self, view):
        return GenericAPIView.get_object(view)


@contextmanager
def _stock():
    saved = SeriesViewSet.__dict__["_point_read_lookup"]
    SeriesViewSet._point_read_lookup = _StockLookup()
    try:
        yield
    finally:
        SeriesViewSet._point_read_lookup = saved


def _setup() -> tuple[str, int]:
    call_command("migrate", verbosity=0)
    Series.objects.filter(organization__name=ORG_NAME).delete()
    ApiKey.objects.filter(organization__name=ORG_NAME).delete()
    _, org, raw_key = bootstrap_org(email="rest-bench@anomalyhub.local", password="rest-bench-password",
                                    org_name=ORG_NAME)
    actor = system_actor(org.pk)
    return raw_key, create_series(actor=actor, symbol="REST", kind="metric", exchange="", bar_seconds=None).pk


def _per_request(client: Client, path: str, key: str) -> float:
    cache.clear()  # the throttle's counters: the bench sends far more than a client may
    t0 = time.process_time()
    for _ in range(REQUESTS):
        response = client.get(path, HTTP_AUTHORIZATION=f"Bearer {key}")
        if response.status_code != 200:
            raise RuntimeError(f"GET {path}: {response.status_code} {response.content[:300]!r}")
    return (time.process_time() - t0) / REQUESTS


def run() -> list[Row]:
    key, series_id = _setup()
    client = Client()
    path = f"/api/v1/series/{series_id}/points/?limit=10"
    _per_request(client, path, key)  # warm: first-request imports and caches
    with _stock():
        _per_request(client, path, key)
    lookup, stock = [], []
    for _ in range(BATCHES):  # interleaved: the machine's load changes alike for both
        lookup.append(_per_request(client, path, key))
        with _stock():
            stock.append(_per_request(client, path, key))
    with_lookup, without = statistics.median(lookup) * 1e6, statistics.median(stock) * 1e6
    return [Row("rest GET /series/<id>/points/ with PkLookup", with_lookup, "us CPU/req", "stock DRF get_object",
                without, higher_is_better=False, target="PkLookup stays only if stock/with >= 1.10",
                extra={"requests": REQUESTS, "batches": BATCHES, "stock_over_with": without / with_lookup,
                       "load_average": os.getloadavg()})]
