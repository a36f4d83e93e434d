"""Watchlists mutations: thin adapters over watchlists.services (which check every right)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry
import strawberry_django
from strawberry.scalars import JSON

from accounts.graphql.base import InputError, actor_of, given, input_errors
from accounts.tenancy import get_for_actor
from anomalyhub.lib.errors import InvalidError

from .. import ingest, services
from ..models import Series, SeriesKind, Watchlist
from .types import IngestResultType, SeriesType, WatchlistType

SeriesResult = Annotated[SeriesType | InputError, strawberry.union("SeriesResult")]
WatchlistResult = Annotated[WatchlistType | InputError, strawberry.union("WatchlistResult")]
IngestResult = Annotated[IngestResultType | InputError, strawberry.union("IngestResult")]


@strawberry.input
class CreateSeriesInput:
    symbol: str
    kind: str = SeriesKind.BAR
    exchange: str = ""
    name: str = ""
    bar_seconds: int | None = None
    history_from: datetime | None = strawberry.field(
        default=None, description="Accept points from this time on (default: INGEST_EARLIEST, 1970-01-01).")


@strawberry.input
class UpdateSeriesInput:
    symbol: str | None = strawberry.UNSET
    kind: str | None = strawberry.UNSET
    exchange: str | None = strawberry.UNSET
    name: str | None = strawberry.UNSET
    bar_seconds: int | None = strawberry.UNSET
    history_from: datetime | None = strawberry.UNSET


@strawberry.input
class CreateWatchlistInput:
    name: str
    description: str = ""
    series_ids: list[strawberry.ID] = strawberry.field(default_factory=list)


@strawberry.input
class UpdateWatchlistInput:
    name: str | None = None
    description: str | None = None
    series_ids: list[strawberry.ID] | None = strawberry.field(
        default=None, description="Replaces the watchlist's series when given.")


def _ids(values) -> list[int] | None:
    if values is None:
        return None
    bad = [v for v in values if not str(v).isdigit() or len(str(v)) > 18]
    if bad:
        raise InvalidError("Unknown series.", details={"series": [f"No series with id {v}." for v in bad]})
    return [int(v) for v in values]


def _given(input_obj) -> dict:
    """The fields a partial input actually sets (null is a value only where the model allows it)."""
    return {k: v for k, v in given(input_obj).items() if v is not None or k == "bar_seconds"}


@strawberry.type
class WatchlistsMutation:
    @strawberry_django.mutation(handle_django_errors=False)
    def create_series(self, info: strawberry.Info, input: CreateSeriesInput) -> SeriesResult:
        return input_errors(lambda: services.create_series(actor=actor_of(info), **vars(input)))

    @strawberry_django.mutation(handle_django_errors=False)
    def update_series(self, info: strawberry.Info, id: strawberry.ID, input: UpdateSeriesInput) -> SeriesResult:
        series = get_for_actor(Series.objects.all(), actor_of(info), id, "change")
        return input_errors(lambda: services.update_series(actor=actor_of(info), series=series, **_given(input)))

    @strawberry_django.mutation(handle_django_errors=False, description="Deletes a series and all its points.")
    def delete_series(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        series = get_for_actor(Series.objects.all(), actor_of(info), id, "change")
        services.delete_series(actor=actor_of(info), series=series)
        return id

    @strawberry_django.mutation(handle_django_errors=False)
    def create_watchlist(self, info: strawberry.Info, input: CreateWatchlistInput) -> WatchlistResult:
        return input_errors(lambda: services.save_watchlist(
            actor=actor_of(info), name=input.name, description=input.description,
            series_ids=_ids(input.series_ids)))

    @strawberry_django.mutation(handle_django_errors=False)
    def update_watchlist(self, info: strawberry.Info, id: strawberry.ID,
                         input: UpdateWatchlistInput) -> WatchlistResult:
        watchlist = get_for_actor(Watchlist.objects.all(), actor_of(info), id, "change")
        return input_errors(lambda: services.save_watchlist(
            actor=actor_of(info), watchlist=watchlist, name=input.name, description=input.description,
            series_ids=_ids(input.series_ids)))

    @strawberry_django.mutation(handle_django_errors=False)
    def delete_watchlist(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        # As REST's DELETE: the watchlist goes, its series stay.
        get_for_actor(Watchlist.objects.all(), actor_of(info), id, "change").delete()
        return id

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Stores points for one series, atomically: a JSON array of objects "
                                            "as in REST. A bad row rejects the batch (fields name the rows).")
    def ingest_points(self, info: strawberry.Info, series_id: strawberry.ID, points: JSON,
                      idempotency_key: str | None = None) -> IngestResult:
        actor = actor_of(info)
        series = get_for_actor(Series.objects.all(), actor, series_id, "ingest")

        def store():
            batch = ingest.points_from_json(points, series.kind, services.series_timezone(series))
            (result,) = services.ingest(actor=actor, batches=[(series, batch)], idempotency_key=idempotency_key)
            return IngestResultType(**result.as_dict())
        return input_errors(store)
