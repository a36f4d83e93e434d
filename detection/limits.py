"""The bound on what one detection chunk may store (settings.ANOMALIES_PER_CHUNK_MAX).

A rule that fires on every window of a long span (or a detector gone haywire) would otherwise
store one row per firing, and alert on each, in one chunk. The first anomalies of the chunk, in
time order, are kept; the rest of each series become ONE summary anomaly that carries their count
and time range, so nothing is dropped silently. The choice depends only on the chunk's anomalies,
so a chunk run again (a retry, a crashed worker) stores the same rows.
"""

from __future__ import annotations

from django.conf import settings

from .models import Anomaly


def _order(anomaly: Anomaly) -> tuple:
    return anomaly.ts, anomaly.series_id, anomaly.source, anomaly.metric_index


def cap_anomalies(anomalies: list[Anomaly], limit: int | None = None) -> list[Anomaly]:
    """At most `limit` (default ANOMALIES_PER_CHUNK_MAX) of the anomalies, plus one summary per
    series whose anomalies went over it."""
    limit = settings.ANOMALIES_PER_CHUNK_MAX if limit is None else limit
    if len(anomalies) <= limit:
        return anomalies
    ordered = sorted(anomalies, key=_order)
    kept, excess = ordered[:limit], ordered[limit:]
    by_series: dict[int, list[Anomaly]] = {}
    for anomaly in excess:
        by_series.setdefault(anomaly.series_id, []).append(anomaly)
    return kept + [_summary(rest, limit) for rest in by_series.values()]


def _summary(rest: list[Anomaly], limit: int) -> Anomaly:
    """One anomaly standing for `rest` (time-ordered, one series): the first one's identity, so it
    keeps the unique key a retry would give it, and the count and span of all of them."""
    first, last = rest[0], rest[-1]
    sources: dict[str, int] = {}
    for anomaly in rest:
        sources[anomaly.source] = sources.get(anomaly.source, 0) + 1
    text = (f"{len(rest):,} anomalies from {first.ts.isoformat()} to {last.ts.isoformat()} were not stored one "
            f"by one: this detection pass reached its limit of {limit:,} (ANOMALIES_PER_CHUNK_MAX). The first was: "
            f"{first.text}")
    summary = Anomaly(organization_id=first.organization_id, series_id=first.series_id, rule_id=first.rule_id,
                      detector_id=first.detector_id, source=first.source, ts=first.ts,
                      metric_index=first.metric_index, text=text[:2000], severity=first.severity,
                      model_version=first.model_version,
                      observed={"suppressed": len(rest), "first_ts": first.ts.isoformat(),
                                "last_ts": last.ts.isoformat(), "by_source": sources,
                                "limit": limit, "setting": "ANOMALIES_PER_CHUNK_MAX"})
    for relation in ("series", "rule", "detector"):  # the objects the pipeline already holds, no query
        if Anomaly._meta.get_field(relation).is_cached(first):
            setattr(summary, relation, getattr(first, relation))
    return summary
