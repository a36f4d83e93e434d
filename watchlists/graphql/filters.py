"""Filters for watchlists' list fields; they narrow an already tenant-scoped queryset."""

import strawberry_django
from strawberry import auto

from ..models import Series, Watchlist


@strawberry_django.filter_type(Series)
class SeriesFilter:
    symbol: auto
    kind: auto
    exchange: auto


@strawberry_django.filter_type(Watchlist)
class WatchlistFilter:
    name: auto
