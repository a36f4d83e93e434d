"""Watchlists queries: series, watchlists, and points/features by time range and resolution."""

from __future__ import annotations

from datetime import datetime

import strawberry
import strawberry_django
from django.conf import settings
from strawberry_django.pagination import OffsetPaginated

from accounts.graphql.base import actor_of, by_id
from accounts.tenancy import get_for_actor
from anomalyhub.lib.errors import InvalidError

from .. import services
from ..api.points import _format_times, time_window
from ..models import Series, Watchlist
from ..store import reader
from ..store.schema import FEATURE_COLUMNS
from ..store.timeconv import from_us
from .filters import SeriesFilter, WatchlistFilter
from .types import PointsPageType, SeriesType, WatchlistType

RESOLUTIONS = ("raw", "1m", "5m", "1h")
DEFAULT_LIMIT, MAX_LIMIT = 10_000, settings.POINTS_MAX_PAGE_ROWS  # the same bounds as REST's /points/


def _check(resolution: str, limit: int, time_format: str) -> None:
    problems = {}
    if resolution not in RESOLUTIONS:
        problems["resolution"] = [f"Choose one of {list(RESOLUTIONS)}."]
    if not 1 <= limit <= MAX_LIMIT:
        problems["limit"] = [f"Between 1 and {MAX_LIMIT}."]
    if time_format not in ("iso", "epoch_ms"):
        problems["timeFormat"] = ["Choose iso or epoch_ms."]
    if problems:
        raise InvalidError("Invalid point query; see details.", details=problems)


def _page(series, data, columns, *, resolution, start_us, end_us, limit, time_format) -> PointsPageType:
    ts = data["ts"][:limit]
    truncated = len(data["ts"]) > limit
    values = [[None if v != v else v for v in data[c][:limit].tolist()] for c in columns]
    rows = [list(r) for r in zip(_format_times(ts, time_format), *values, strict=True)]
    return PointsPageType(
        series_id=series.pk, resolution=resolution, start=from_us(start_us), end=from_us(end_us),
        columns=["ts", *columns], rows=rows, count=len(ts), limit=limit, truncated=truncated,
        next_start=from_us(int(ts[-1]) + 1) if truncated else None)


@strawberry.type
class WatchlistsQuery:
    @strawberry_django.field
    def series(self, id: strawberry.ID) -> SeriesType | None:
        return by_id(Series, id)

    series_list: OffsetPaginated[SeriesType] = strawberry_django.offset_paginated(filters=SeriesFilter)

    @strawberry_django.field
    def watchlist(self, id: strawberry.ID) -> WatchlistType | None:
        return by_id(Watchlist, id)

    watchlist_list: OffsetPaginated[WatchlistType] = strawberry_django.offset_paginated(filters=WatchlistFilter)

    @strawberry_django.field(description="Points of a series in [start, end) (default: the last day it has), "
                                         "raw or rolled up to 1m/5m/1h, at most `limit` rows per page.")
    def points(self, info: strawberry.Info, series_id: strawberry.ID, start: datetime | None = None,
               end: datetime | None = None, resolution: str = "raw", limit: int = DEFAULT_LIMIT,
               time_format: str = "iso") -> PointsPageType:
        series = get_for_actor(Series.objects.all(), actor_of(info), series_id)
        _check(resolution, limit, time_format)
        start_us, end_us = time_window(series, start, end)
        data, columns = services.read_points(series, resolution, start_us, end_us, limit)
        return _page(series, data, columns, resolution=resolution, start_us=start_us, end_us=end_us, limit=limit,
                     time_format=time_format)

    @strawberry_django.field(description="Seed 001's 1-minute feature table (point-in-time correct).")
    def features(self, info: strawberry.Info, series_id: strawberry.ID, start: datetime | None = None,
                 end: datetime | None = None, limit: int = DEFAULT_LIMIT, time_format: str = "iso") -> PointsPageType:
        series = get_for_actor(Series.objects.all(), actor_of(info), series_id)
        _check("1m", limit, time_format)
        start_us, end_us = time_window(series, start, end)
        data = reader.read_features(series.pk, start_us, end_us, limit + 1)
        return _page(series, data, list(FEATURE_COLUMNS), resolution="1m", start_us=start_us, end_us=end_us,
                     limit=limit, time_format=time_format)
