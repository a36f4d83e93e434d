"""Claim and load: which series are behind, and one chunk's series locked with what it reads.

A chunk locks the cursors of its series FOR UPDATE, in series order (no deadlock between
workers): a series' engine state is never interleaved, while different series run in parallel.
Under READ COMMITTED every later statement takes a new snapshot, so the reads after the lock see
what the previous holder of the lock committed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db.models import Exists, F, OuterRef, Q

from accounts.tenancy import Actor, system_actor
from watchlists import pending
from watchlists.models import PendingWork, Series
from watchlists.store import reader

from ..models import DetectionCursor, Detector, DetectorStatus, Rule, RuleState
from ..services.rules import engine_columns
from .messages import first_after


def stale_series() -> list[tuple[int, int]]:
    """(series id, organization id) of series with points newer than their cursor and a rule or a
    ready detector, and of every series with stored spans not taken yet (late points, or a run
    lost). One statement: the series behind their cursor first, then whether anything watches them."""
    watched = (Exists(Rule.objects.filter(series=OuterRef("pk"), enabled=True))
               | Exists(Rule.objects.filter(watchlist__items__series=OuterRef("pk"), enabled=True))
               | Exists(Detector.objects.filter(series=OuterRef("pk"), enabled=True, status=DetectorStatus.READY)))
    behind = Series.objects.filter(
        Q(detection_cursor__isnull=True) | Q(detection_cursor__read_to__isnull=True)
        | Q(last_point_at__gt=F("detection_cursor__read_to")), watched, last_point_at__isnull=False)
    spans = PendingWork.objects.filter(purpose=pending.DETECT).values_list("series_id", "organization_id")
    return sorted(set(behind.values_list("pk", "organization_id").union(spans)))


def rules_for(series: Series):
    return (Rule.objects.filter(organization_id=series.organization_id, enabled=True)
            .filter(Q(series=series) | Q(watchlist__items__series=series)).distinct().order_by("pk"))


Points = tuple[np.ndarray, dict[str, np.ndarray]]  # (times µs, engine columns)


@dataclass
class Claimed:
    """One chunk's series of an organization, in series order, with their locked cursors (each
    annotated has_detector), the points after each cursor, their enabled rules (own and
    watchlists') in rule order, the state of every (rule, series) pair (a fresh unsaved one for
    a new pair), and the earliest start of the spans taken per series (late points)."""

    series: list[Series]
    cursors: dict[int, DetectionCursor]
    points: dict[int, Points]
    rules: dict[int, list[Rule]]
    states: dict[tuple[int, int], RuleState]
    late: dict[int, int]
    actor: Actor  # the organization's system actor every query of the chunk is scoped with


def claim(series_ids: list[int], organization_id: int, limit: int) -> Claimed:
    """Locks the organization's series among the ids (a series without a cursor gets one first)
    and loads what their chunk needs (at most `limit` points each), in the caller's transaction."""
    actor = system_actor(organization_id)
    cursors = _lock(actor, series_ids)
    missing = [i for i in series_ids if i not in cursors]
    if missing and _create_cursors(actor, missing):
        cursors |= _lock(actor, missing)
    series_list = [cursors[i].series for i in sorted(cursors)]
    late = _take_spans(actor, list(cursors))
    points = _read_points(series_list, cursors, limit)
    rules = _rules_by_series(actor, list(cursors)) if cursors else {}
    pairs = {(rule.pk, series_id) for series_id, rs in rules.items() for rule in rs}
    found = {(st.rule_id, st.series_id): st for st in RuleState.objects.for_actor(actor).filter(
        series_id__in={sid for _, sid in pairs}, rule_id__in={rid for rid, _ in pairs})} if pairs else {}
    states = {key: found.get(key) or RuleState(rule_id=key[0], series_id=key[1], organization_id=organization_id)
              for key in pairs}
    return Claimed(series_list, cursors, points, rules, states, late, actor)


def _read_points(series_list: list[Series], cursors: dict[int, DetectionCursor], limit: int) -> dict[int, Points]:
    """The points after each cursor (at most `limit` each), one statement per kind of series."""
    by_kind: dict[str, dict[int, int]] = {}
    for s in series_list:
        by_kind.setdefault(s.kind, {})[s.pk] = first_after(cursors[s.pk].last_msg_id)
    points = {}
    for kind, starts in by_kind.items():
        for series_id, data in reader.read_raw_after(kind, starts, limit).items():
            points[series_id] = (data["ts"], engine_columns(kind, data))
    return points


def _lock(actor, series_ids: list[int]) -> dict[int, DetectionCursor]:
    ready = Detector.objects.filter(series=OuterRef("series_id"), enabled=True, status=DetectorStatus.READY)
    locked = (DetectionCursor.objects.for_actor(actor).filter(series_id__in=series_ids)
              .select_for_update(of=("self",)).select_related("series")
              .annotate(has_detector=Exists(ready)).order_by("series_id"))
    return {c.series_id: c for c in locked}


def _create_cursors(actor, series_ids: list[int]) -> bool:
    new = list(Series.objects.for_actor(actor).filter(pk__in=series_ids).values_list("pk", flat=True))
    DetectionCursor.objects.bulk_create([DetectionCursor(series_id=pk, organization_id=actor.organization_id)
                                         for pk in new], ignore_conflicts=True)
    return bool(new)


def _take_spans(actor, series_ids: list[int]) -> dict[int, int]:
    """Takes (deletes) the detection work queued for the locked series: the earliest start of each.
    Right after the lock, before any point is read (see detection.pipeline on late points)."""
    return {series_id: lo for series_id, (lo, _) in
            pending.take(pending.DETECT, actor.organization_id, series_ids).items()}


def _rules_by_series(actor, series_ids: list[int]) -> dict[int, list[Rule]]:
    """Enabled rules of each series (its own and its watchlists'), in rule order: one row per rule
    and series, `member` naming the series a watchlist rule reaches."""
    wanted = set(series_ids)
    rows = (Rule.objects.for_actor(actor).filter(Q(series_id__in=series_ids)
                                                 | Q(watchlist__items__series_id__in=series_ids), enabled=True)
            .annotate(member=F("watchlist__items__series_id")).order_by("pk"))
    out: dict[int, dict[int, Rule]] = {}
    for rule in rows:
        series_id = rule.series_id if rule.series_id is not None else rule.member
        if series_id in wanted:
            out.setdefault(series_id, {}).setdefault(rule.pk, rule)
    return {sid: list(rules.values()) for sid, rules in out.items()}
