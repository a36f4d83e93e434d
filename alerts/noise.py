"""Noise control as plain code over plain values: live dispatch and alert replay run this same
planner, live with state loaded from the database, replay with empty state over history, so
"would this have fired?" has the same answer as "did it fire?".

Everything is decided on the anomaly's own time (event time), never the wall clock, and group
windows are aligned to the epoch, so the outcome does not depend on the order in which series
happen to be processed. Per anomaly, in this order:

1. incident lifecycle (per series): opens, continues, resolves after `resolve_after` of quiet;
   too many openings within `flap_window` mark it flapping (one notice, then silence);
2. snooze, exchange session, per-series cooldown, quiet hours (hold or drop);
3. grouping: quiet-hours holds collect until the quiet period ends; a group window collects its
   bucket; watchlist targets collect each minute so many symbols moving together are one
   incident; otherwise one message per anomaly.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

ANOMALIES, RESOLVED, FLAPPING = "anomalies", "resolved", "flapping"
INCIDENT_BUCKET_SECONDS = 60


@dataclass(frozen=True)
class Item:
    """An anomaly as noise control sees it (a stored one, or one from a rule backtest)."""

    key: str
    series_id: int
    ts: datetime
    severity: str
    exchange: str = ""
    id: int | None = None


@dataclass
class Config:
    cooldown: float = 0
    window: float = 0
    quiet_start: time | None = None
    quiet_end: time | None = None
    quiet_drop: bool = False
    time_zone: str = "UTC"
    snooze_until: datetime | None = None
    session_only: bool = False
    notify_resolution: bool = False
    resolve_after: float = 300
    flap_threshold: int = 4
    flap_window: float = 3600


@dataclass
class IncidentState:
    series_id: int
    opened_at: datetime
    last_anomaly_at: datetime
    open: bool = True
    anomaly_count: int = 1
    flapping: bool = False
    recent_opens: list[datetime] = field(default_factory=list)
    last_notified_at: datetime | None = None
    resolved_at: datetime | None = None
    pk: int | None = None
    dirty: bool = False


@dataclass
class Message:
    key: str
    kind: str
    event_ts: datetime
    items: list[Item] = field(default_factory=list)
    group_end: datetime | None = None  # groups accept more anomalies until then (event time)
    hold_until: datetime | None = None  # quiet hours: not before this (absolute)
    existing: bool = False  # live only: extends a group already waiting in the outbox
    detail: dict = field(default_factory=dict)
    series_ids: set[int] = field(default_factory=set)


def epoch(ts: datetime) -> int:
    return int(ts.timestamp())


def in_quiet_hours(ts: datetime, zone: str, start: time, end: time) -> bool:
    if start == end:
        return False
    local = ts.astimezone(ZoneInfo(zone)).time().replace(tzinfo=None)
    return start <= local < end if start < end else (local >= start or local < end)


def quiet_hours_end(ts: datetime, zone: str, start: time, end: time) -> datetime:
    """The UTC instant the quiet period containing ts ends: the next `end` on the local wall
    clock, so DST shifts move it with the user (07:00 stays 07:00 local)."""
    tz = ZoneInfo(zone)
    local = ts.astimezone(tz)
    day: date = local.date()
    if start > end and local.time().replace(tzinfo=None) >= start:
        day += timedelta(days=1)  # the quiet period wraps midnight: it ends tomorrow
    return datetime.combine(day, end, tzinfo=tz).astimezone(UTC)


class Planner:
    def __init__(self, config: Config, incidents: dict[int, IncidentState] | None = None,
                 open_groups: set[str] | frozenset = frozenset(), is_open=None):
        self.config = config
        self.incidents = incidents if incidents is not None else {}
        self.open_groups = open_groups
        self.messages: dict[str, Message] = {}
        self.suppressed: Counter = Counter()
        self.closed: list[IncidentState] = []
        self._is_open = is_open

    def feed(self, items) -> None:
        for item in sorted(items, key=lambda i: (i.ts, i.series_id, i.key)):
            self._feed(item)

    def resolve_quiet(self, now: datetime) -> None:
        """Resolves incidents whose last anomaly is older than the quiet period."""
        for inc in list(self.incidents.values()):
            if inc.open and (now - inc.last_anomaly_at).total_seconds() >= self.config.resolve_after:
                self._resolve(inc, inc.last_anomaly_at + timedelta(seconds=self.config.resolve_after))

    def _feed(self, item: Item) -> None:
        cfg = self.config
        inc = self._track(item)
        if inc.flapping:
            self.suppressed["flapping"] += 1
            return
        if cfg.snooze_until and item.ts < cfg.snooze_until:
            self.suppressed["snoozed"] += 1
            return
        if cfg.session_only and item.exchange and not self._open(item.exchange, item.ts):
            self.suppressed["out_of_session"] += 1
            return
        if cfg.cooldown and inc.last_notified_at and (item.ts - inc.last_notified_at).total_seconds() < cfg.cooldown:
            self.suppressed["cooldown"] += 1
            return
        if cfg.quiet_start is not None and cfg.quiet_end is not None and in_quiet_hours(
                item.ts, cfg.time_zone, cfg.quiet_start, cfg.quiet_end):
            if cfg.quiet_drop:
                self.suppressed["quiet_hours"] += 1
                return
            until = quiet_hours_end(item.ts, cfg.time_zone, cfg.quiet_start, cfg.quiet_end)
            self._add(f"q:{epoch(until)}", item, group_end=until, hold_until=until)
        elif cfg.window:
            start = epoch(item.ts) // int(cfg.window) * int(cfg.window)
            end = datetime.fromtimestamp(start + int(cfg.window), tz=UTC)
            self._add(f"g:{start}", item, group_end=end)
        else:
            self._add(f"a:{item.key}", item)
        inc.last_notified_at = item.ts
        inc.dirty = True

    def _track(self, item: Item) -> IncidentState:
        cfg = self.config
        inc = self.incidents.get(item.series_id)
        if inc and inc.open and (item.ts - inc.last_anomaly_at).total_seconds() > cfg.resolve_after:
            self._resolve(inc, inc.last_anomaly_at + timedelta(seconds=cfg.resolve_after))
        if inc and inc.open:
            inc.last_anomaly_at = max(inc.last_anomaly_at, item.ts)
            inc.anomaly_count += 1
            inc.dirty = True
            return inc
        opens = [o for o in (inc.recent_opens if inc else []) if (item.ts - o).total_seconds() < cfg.flap_window]
        # Hysteresis: once flapping, an incident stays so until a whole flap window passes without openings.
        flapping = bool(inc and inc.flapping and opens)
        opens.append(item.ts)
        new = IncidentState(series_id=item.series_id, opened_at=item.ts, last_anomaly_at=item.ts, flapping=flapping,
                            recent_opens=opens, last_notified_at=inc.last_notified_at if inc else None, dirty=True)
        if not flapping and cfg.flap_threshold and len(opens) >= cfg.flap_threshold:
            new.flapping = True
            self._add(f"f:{item.series_id}:{epoch(item.ts)}", item, kind=FLAPPING,
                      detail={"openings": len(opens), "window_seconds": cfg.flap_window})
        if inc is not None:
            self.closed.append(inc)
        self.incidents[item.series_id] = new
        return new

    def _resolve(self, inc: IncidentState, at: datetime) -> None:
        inc.open, inc.resolved_at, inc.dirty = False, at, True
        snoozed = self.config.snooze_until and at < self.config.snooze_until
        if self.config.notify_resolution and not inc.flapping and not snoozed:
            msg = self._add(f"r:{inc.series_id}:{epoch(inc.opened_at)}", None, kind=RESOLVED, event_ts=at,
                            detail={"opened_at": inc.opened_at.isoformat(), "resolved_at": at.isoformat(),
                                    "anomaly_count": inc.anomaly_count})
            msg.series_ids.add(inc.series_id)

    def _add(self, key, item, *, kind=ANOMALIES, group_end=None, hold_until=None, event_ts=None, detail=None):
        msg = self.messages.get(key)
        if msg is None:
            msg = self.messages[key] = Message(key=key, kind=kind, event_ts=event_ts or item.ts, group_end=group_end,
                                               hold_until=hold_until, existing=key in self.open_groups,
                                               detail=detail or {})
        if item is not None:
            msg.items.append(item)
            msg.series_ids.add(item.series_id)
        return msg

    def _open(self, exchange: str, ts: datetime) -> bool:
        if self._is_open is None:
            from watchlists.calendars import is_open

            self._is_open = _minute_cache(is_open)
        return self._is_open(exchange, ts)


def _minute_cache(is_open):
    cache: dict = {}

    def check(exchange, ts):
        key = (exchange, epoch(ts) // 60)
        if key not in cache:
            cache[key] = is_open(exchange, ts)
        return cache[key]

    return check
