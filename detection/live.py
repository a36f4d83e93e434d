"""Publishes new anomalies to the live feed (the same per-series groups as the points)."""

from __future__ import annotations

from datetime import timedelta

from django.db import connection
from django.utils import timezone

from watchlists.live import publish_many

from .models import Anomaly
from .services.explain import explain


def anomaly_event(anomaly: Anomaly) -> dict:
    """The small summary clients get; details are one REST/GraphQL call away. `explanation` is the
    anomaly's sentence (as in emails), `symbol` its series'."""
    return {"type": "anomaly", "series": anomaly.series_id, "id": anomaly.pk,
            "ts": anomaly.ts.isoformat().replace("+00:00", "Z"), "source": anomaly.source, "text": anomaly.text,
            "severity": anomaly.severity, "score": anomaly.score, "metric_index": anomaly.metric_index,
            "observed": anomaly.observed, "symbol": anomaly.series.symbol, "explanation": explain(anomaly)}


def publish_created(anomalies: list[Anomaly]) -> None:
    """Publishes anomalies a transaction just committed (rows with ids), and marks them published."""
    _publish(anomalies)


def publish_unpublished(older_than: timedelta = timedelta(seconds=5), limit: int = 5000) -> int:
    """The outbox sweep: anomalies committed by a worker that died before announcing them."""
    stale = Anomaly.objects.filter(published_at__isnull=True, created_at__lt=timezone.now() - older_than
                                   ).select_related("series", "rule", "detector")
    batch = list(stale.order_by("created_at")[:limit])
    _publish(batch)
    return len(batch)


def _publish(anomalies: list[Anomaly]) -> None:
    """One publish for all of them, then one UPDATE marking them published. A failed publish
    (Redis down or restarting) leaves them unpublished: the outbox sweep sends them once it is back
    (a client cannot see that loss as a `seq` gap, the events never reached its server)."""
    if not anomalies:
        return
    if publish_many([(a.series_id, anomaly_event(a)) for a in sorted(anomalies, key=lambda a: (a.ts, a.pk))]):
        _mark_published([a.pk for a in anomalies])


def _mark_published(ids: list[int]) -> None:
    """One UPDATE, written out: the ORM's update() compiles for longer than the statement runs, and
    every detection pass with an anomaly comes here."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Anomaly._meta.db_table} SET published_at = %s WHERE id IN "
                       f"({', '.join(['%s'] * len(ids))})", [now, *ids])
