"""Late points: a series whose spans taken start at or before its cursor streams again from before them.

The cursor goes back far enough before the late points that every window and prev() they touch
is rebuilt from stored points, the rules' engines start fresh from there, detectors re-warm, and
the stream replays forward. Replayed outputs before the late points are dropped (the first stream
judged those with the full history); the rest are inserted as usual, the unique anomaly key
absorbing the ones already stored.
"""

from __future__ import annotations

import logging
import math

from watchlists.models import Series
from watchlists.store import reader

from .. import metrics
from ..models import Detector, Rule
from ..rules.alignment import alignment_size
from .claim import Claimed
from .engines import plan
from .messages import RANK_BITS

logger = logging.getLogger(__name__)


def rewind(chunk: Claimed) -> set[int]:
    """Rewinds every series of the chunk that late points reached and returns their ids: the cursor
    moves back to _replay_start, the rules' states and the detectors' streaming states are reset
    (the caller saves them with the cursor), and outputs before the late points are to be dropped
    (replay_from_us). A series that no rule or detector watches has nothing to replay."""
    rewound = set()
    for series in chunk.series:
        lo, cursor = chunk.late.get(series.pk), chunk.cursors[series.pk]
        if lo is None or cursor.last_msg_id < 0 or lo > cursor.last_msg_id // RANK_BITS:
            continue
        series_rules = chunk.rules.get(series.pk, [])
        if not series_rules and not cursor.has_detector:
            continue
        start = _replay_start(series, series_rules, lo)
        cursor.last_msg_id = (start - 1) * RANK_BITS if start > 0 else -1
        cursor.replay_from_us = lo
        for rule in series_rules:
            _extend_grid(rule, series, start)
            state = chunk.states[(rule.pk, series.pk)]
            state.snapshot, state.snapshot_msg_id, state.last_error = None, -1, ""
        rewound.add(series.pk)
    if rewound:
        # stream_version None: the next chunk warms each model on the points before it, as for a new model.
        Detector.objects.for_actor(chunk.actor).filter(series_id__in=rewound).update(stream_version=None)
        metrics.REWINDS.inc(len(rewound))
        logger.info("late points: series %s replay from before them", sorted(rewound))
    return rewound


def _extend_grid(rule: Rule, series: Series, start_us: int) -> None:
    """Moves a window rule's origin back (by whole periods of its grid, so every window stays
    where it was) when a replay starts before its first window: the engine ignores rows before
    that, and late points older than the first point the rule saw need their windows too."""
    compiled = plan(rule, series)
    if not compiled.has_window or rule.origin_time_ms is None:
        return
    earliest_ms = start_us // 1000 - compiled.window_size
    if earliest_ms >= rule.origin_time_ms:
        return
    period = math.lcm(alignment_size(compiled.precision, compiled.step, compiled.round_time), compiled.step)
    rule.origin_time_ms -= -(-(rule.origin_time_ms - earliest_ms) // period) * period
    # Only ever earlier: another series of a watchlist rule may have moved it further back already.
    Rule.objects.filter(pk=rule.pk, origin_time_ms__gt=rule.origin_time_ms).update(origin_time_ms=rule.origin_time_ms)


def _replay_start(series: Series, rules: list[Rule], late_us: int) -> int:
    """Where a replay for points from `late_us` starts (µs): early enough that fresh engines rebuild
    everything the late points touch. A window containing them ends at most window_size after
    them, and a row compares with the latest window ended before it (up to a step earlier), so
    window_size + step before; and prev() needs as many stored points before them as it nests
    (at most the plan's prev() calls). Detectors warm on the points before the replay by
    themselves."""
    start, depth = late_us, 0
    for rule in rules:
        compiled = plan(rule, series)
        if compiled.has_window:
            start = min(start, late_us - (compiled.window_size + compiled.step) * 1000)  # plans count ms
        depth = max(depth, len(compiled.prevs))
    if depth:
        before = reader.read_raw_before(series.pk, series.kind, late_us, depth)
        if len(before["ts"]):
            start = min(start, int(before["ts"][0]))
    return start
