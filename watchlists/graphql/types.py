"""GraphQL types of watchlists: series, watchlists, point pages and ingest results."""

from __future__ import annotations

from datetime import datetime

import strawberry
import strawberry_django
from strawberry import auto
from strawberry.scalars import JSON

from accounts.graphql.base import TenantScoped

from ..models import Series, Watchlist
from ..services import series_timezone


@strawberry_django.type(Series)
class SeriesType(TenantScoped):
    ordering = ("symbol", "pk")

    id: auto
    symbol: auto
    kind: auto
    exchange: auto
    name: auto
    bar_seconds: auto
    created_at: auto
    last_point_at: auto
    history_from: auto
    watchlists: list[WatchlistType] = strawberry_django.field(pagination=True)

    @strawberry_django.field(only=["exchange"], description="IANA zone of the series' exchange (UTC without one).")
    def timezone(self) -> str:
        return series_timezone(self)


@strawberry_django.type(Watchlist)
class WatchlistType(TenantScoped):
    ordering = ("name", "pk")

    id: auto
    name: auto
    description: auto
    created_at: auto
    series: list[SeriesType] = strawberry_django.field(pagination=True)


@strawberry.type(description="One page of points: rows are [ts, *columns]; NaN is null. When `truncated`, "
                             "ask again with start = nextStart for the next page (pages never overlap).")
class PointsPageType:
    series_id: strawberry.ID
    resolution: str
    start: datetime
    end: datetime
    columns: list[str]
    rows: JSON
    count: int
    limit: int
    truncated: bool
    next_start: datetime | None


@strawberry.type
class IngestResultType:
    series_id: strawberry.ID
    received: int
    stored: int
    duplicate: bool
    first_ts: str | None
    last_ts: str | None
