"""GraphQL subscription to live anomalies (graphql-transport-ws), on the live feed's groups.

Access is checked as the live feed checks it (detection.consumers.resolve_series) before any
group is joined; another organization's ids get a not_found error and nothing else."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from accounts.graphql.base import actor_of
from anomalyhub.lib.errors import InvalidError, NotFoundError
from watchlists.live import series_group

from ..consumers import resolve_series
from .types import AnomalyEventType


def _event(event: dict) -> AnomalyEventType:
    return AnomalyEventType(id=event["id"], series_id=event["series"], ts=datetime.fromisoformat(event["ts"]),
                            source=event["source"], text=event["text"], severity=event["severity"],
                            score=event.get("score"), metric_index=event.get("metric_index", 0),
                            observed=event.get("observed", {}))


def _pk(value, what: str) -> int:
    text = str(value)
    if not text.isdigit() or len(text) > 18:
        raise NotFoundError(f"Not found: {what} {value}.", details={"refused": [f"{what} {value}"]})
    return int(text)


@strawberry.type
class DetectionSubscription:
    @strawberry.subscription(description="New anomalies of one watchlist's series (as they are when you "
                                          "subscribe) or of one series, as they are detected.")
    async def anomalies(self, info: strawberry.Info, watchlist_id: strawberry.ID | None = None,
                        series_id: strawberry.ID | None = None) -> AsyncGenerator[AnomalyEventType, None]:
        actor = actor_of(info)
        actor.require("view")
        if (watchlist_id is None) == (series_id is None):
            raise InvalidError("Subscribe to one watchlistId or one seriesId.",
                               details={"watchlistId": ["Give exactly one of watchlistId and seriesId."]})
        series_ids = [_pk(series_id, "series")] if series_id is not None else []
        watchlist = _pk(watchlist_id, "watchlist") if watchlist_id is not None else None
        allowed, refused = await resolve_series(actor, series_ids, watchlist)
        if refused:
            raise NotFoundError(f"Not found: {', '.join(refused)}.", details={"refused": refused})
        consumer = info.context["request"]
        groups = [series_group(i) for i in sorted(allowed)]
        async with consumer.listen_to_channel("live.event", groups=groups) as messages:
            async for message in messages:
                # Every subscription of this socket sees every live.event it joined; keep ours.
                if message.get("series") in allowed and message["event"].get("type") == "anomaly":
                    yield _event(message["event"])
