"""The pass: chunks of many series of one organization, each one transaction."""

from __future__ import annotations

import numpy as np
from django.db import transaction

from watchlists.store.timeconv import from_us

from .. import metrics
from ..limits import cap_anomalies
from ..models import Detector, DetectorStatus
from .announce import announce
from .claim import claim
from .engines import run_detector, run_rule
from .messages import RANK_BITS, message_ids, snapshot_interval, whole_timestamps
from .rewind import rewind
from .write import save

_NO_POINTS = (np.zeros(0, dtype=np.int64), {})


def run_series(series_id: int, organization_id: int) -> int:
    """Processes every new point of a series; returns anomalies written."""
    return run_many([series_id], organization_id)


def run_many(series_ids: list[int], organization_id: int) -> int:
    """Processes every new point of several series of one organization (a coalesced ingest burst);
    returns anomalies written. Safe to run concurrently and repeatedly: the cursor locks and the
    unique anomaly key absorb duplicates."""
    return run_some(series_ids, organization_id)[0]


def run_some(series_ids: list[int], organization_id: int, max_chunks: int | None = None) -> tuple[int, list[int]]:
    """run_many, stopping after `max_chunks` chunks: (anomalies written, series with more to read)."""
    pending = sorted(set(series_ids))
    written = chunks = 0
    while pending and (max_chunks is None or chunks < max_chunks):
        with metrics.CHUNK_SECONDS.time():
            count, pending = _run_chunk(pending, organization_id)
        written += count
        chunks += 1
    return written, pending


@transaction.atomic
def _run_chunk(series_ids: list[int], organization_id: int) -> tuple[int, list[int]]:
    """One chunk of every series given; returns (anomalies written, the series with more to read)."""
    limit = snapshot_interval()
    # Read RANK_BITS extra rows so that a timestamp group at the limit can be completed.
    chunk = claim(series_ids, organization_id, limit + RANK_BITS)
    rewound = rewind(chunk)
    active = [s for s in chunk.series if s.pk not in rewound and len(chunk.points.get(s.pk, _NO_POINTS)[0])]
    if not active and not rewound:
        return 0, []
    detectors: dict[int, list[Detector]] = {}
    with_detectors = [s for s in active if chunk.cursors[s.pk].has_detector]
    if with_detectors:
        for detector in Detector.objects.for_actor(chunk.actor).filter(series__in=with_detectors, enabled=True, status=DetectorStatus.READY):
            detectors.setdefault(detector.series_id, []).append(detector)
    # A rewound series saves its reset states and cursor now and streams again from the next chunk.
    anomalies, more = [], sorted(rewound)
    advanced = [chunk.cursors[pk] for pk in more]
    ran = [state for key, state in chunk.states.items() if key[1] in rewound]
    for series in active:
        ts_us, raw = chunk.points[series.pk]
        take = whole_timestamps(ts_us, limit)
        if take < len(ts_us):
            more.append(series.pk)
        ids = message_ids(ts_us[:take])
        columns = {k: v[:take] for k, v in raw.items()}
        found = []
        for rule in chunk.rules.get(series.pk, []):
            state = chunk.states[(rule.pk, series.pk)]
            ran.append(state)
            found += run_rule(rule, series, state, columns, ids)
        for detector in detectors.get(series.pk, []):
            found += run_detector(detector, series, ts_us[:take], columns)
        metrics.POINTS_DETECTED.inc(take)
        cursor = chunk.cursors[series.pk]
        if cursor.replay_from_us is not None:
            floor = from_us(cursor.replay_from_us)
            found = [a for a in found if a.ts >= floor]
        anomalies += found
        cursor.last_msg_id = int(ids[-1])
        advanced.append(cursor)
    anomalies = cap_anomalies(anomalies)
    created = save(anomalies, ran, advanced)
    for anomaly in anomalies:
        metrics.ANOMALIES.labels(anomaly.source.split(":")[0]).inc()
    if anomalies:
        transaction.on_commit(lambda: announce(organization_id, anomalies, created))
    return len(created), more
