"""Live dispatch: claims new anomalies once, matches subscriptions, runs noise control, and
writes the outbox (Notification rows) in the same transaction.

Concurrency: a dispatch locks the subscriptions it touches (in pk order, so no deadlocks), and
the open groups it may extend; delivery claims rows with a conditional update that waits on
those locks, so an anomaly is either added to a group before it is sent or starts a new one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.db import connection, transaction
from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from detection.models import SEVERITY_RANK, Anomaly

from ..models import AlertSubscription, Channel, Incident, Notification, Target
from ..noise import ANOMALIES, IncidentState, Item, Message, Planner
from . import render
from .subscriptions import config_for

logger = logging.getLogger(__name__)
# A group is sent this long after its window ends (or at once for old data), so anomalies that
# land a little late (other series of the same minute) still join it.
GROUP_GRACE = timedelta(seconds=5)
# Due notifications sent by the dispatching worker itself (the rest are queued): one queue hop less.
INLINE_DELIVERIES = 3


def item_key(series_id: int, ts: datetime, source: str, metric_index: int) -> str:
    return f"{series_id}:{ts.astimezone(UTC).isoformat()}:{source}:{metric_index}"


def item_of(a: Anomaly) -> Item:
    return Item(key=item_key(a.series_id, a.ts, a.source, a.metric_index), id=a.pk,
                series_id=a.series_id, ts=a.ts, severity=a.severity, exchange=a.series.exchange)


def _claim(organization_id: int, anomaly_ids: list[int]) -> list[int]:
    """Inserts the dispatch marks; returns only the anomalies this call claimed. Plain SQL that
    PostgreSQL and SQLite (embedded mode) both run: no now(), no array parameter."""
    if not anomaly_ids:
        return []
    ids = sorted(set(anomaly_ids))
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO alerts_dispatchedanomaly (anomaly_id, organization_id, dispatched_at) "
            "SELECT a.id, a.organization_id, %s FROM detection_anomaly a "
            f"WHERE a.organization_id = %s AND a.id IN ({', '.join(['%s'] * len(ids))}) "
            "ON CONFLICT (anomaly_id) DO NOTHING RETURNING anomaly_id",
            [connection.ops.adapt_datetimefield_value(timezone.now()), organization_id, *ids])
        return [row[0] for row in cursor.fetchall()]


def watchlist_members(organization_id: int, watchlist_ids) -> dict[int, set[int]]:
    from watchlists.models import WatchlistItem

    members: dict[int, set[int]] = {}
    for wl, series in WatchlistItem.objects.filter(organization_id=organization_id, watchlist_id__in=watchlist_ids
                                                   ).values_list("watchlist_id", "series_id"):
        members.setdefault(wl, set()).add(series)
    return members


def matches(sub: AlertSubscription, a, members: dict[int, set[int]]) -> bool:
    """Whether an anomaly (a model or a replay record with the same attributes) is for sub."""
    if SEVERITY_RANK.get(a.severity, 0) < SEVERITY_RANK.get(sub.min_severity, 0):
        return False
    return {
        Target.EVERYTHING: True,
        Target.SERIES: a.series_id == sub.series_id,
        Target.WATCHLIST: a.series_id in members.get(sub.watchlist_id, ()),
        Target.RULE: a.rule_id is not None and a.rule_id == sub.rule_id,
        Target.DETECTOR: a.detector_id is not None and a.detector_id == sub.detector_id,
    }[sub.target]


def _candidates(organization_id: int, anomalies: list[Anomaly]):
    """Enabled subscriptions that may want these anomalies, as a subquery (the watchlist join
    repeats rows, and FOR UPDATE cannot be combined with DISTINCT)."""
    series = {a.series_id for a in anomalies}
    q = (Q(target=Target.EVERYTHING) | Q(target=Target.SERIES, series_id__in=series)
         | Q(target=Target.WATCHLIST, watchlist__items__series_id__in=series)
         | Q(target=Target.RULE, rule_id__in={a.rule_id for a in anomalies if a.rule_id})
         | Q(target=Target.DETECTOR, detector_id__in={a.detector_id for a in anomalies if a.detector_id}))
    # Only subscriptions of people still active members: one who left (or was deactivated) keeps
    # their subscriptions for a return, but they plan nothing meanwhile.
    return (AlertSubscription.objects.filter(organization_id=organization_id, enabled=True, user__is_active=True,
                                             user__memberships__organization_id=organization_id)
            .filter(q).values("pk"))


def dispatch_anomalies(*, organization_id: int, anomaly_ids: list[int], now: datetime | None = None) -> int:
    """Plans notifications for new anomalies; returns the outbox rows written.

    Idempotent: each anomaly is claimed once (DispatchedAnomaly), in the transaction that writes
    its notifications, so a re-run (retry, sweep, crash) after a commit does nothing, and a
    crash before the commit leaves everything for the re-run."""
    now = now or timezone.now()
    written: list[Notification] = []
    with transaction.atomic():
        claimed = _claim(organization_id, anomaly_ids)
        if not claimed:
            return 0
        anomalies = list(Anomaly.objects.filter(organization_id=organization_id, pk__in=claimed)
                         .select_related("series", "rule", "detector").order_by("ts", "series_id", "pk"))
        # Found and locked in one round trip: every query here is on the anomaly -> webhook latency path.
        subs = list(AlertSubscription.objects.filter(pk__in=_candidates(organization_id, anomalies))
                    .select_related("user").select_for_update(of=("self",)).order_by("pk"))
        members = watchlist_members(organization_id, {s.watchlist_id for s in subs if s.watchlist_id})
        loaded = {a.pk: a for a in anomalies}
        for sub in subs:
            items = [item_of(a) for a in anomalies if matches(sub, a, members)]
            if items:
                written += plan_and_write(sub, items, now, loaded)
    logger.info("alerts dispatch org=%s anomalies=%s notifications=%s", organization_id, len(claimed), len(written))
    return len(written)


def load_incidents(sub: AlertSubscription, series_ids=None) -> dict[int, IncidentState]:
    qs = Incident.objects.filter(subscription=sub)
    if series_ids is not None:
        qs = qs.filter(series_id__in=series_ids)
    # Each series' latest incident, by the (subscription, series, opened_at) unique index. Not
    # DISTINCT ON, which SQLite (embedded mode) refuses.
    newest = Incident.objects.filter(subscription=sub, series_id=OuterRef("series_id")).order_by("-opened_at")
    latest = qs.filter(pk=Subquery(newest.values("pk")[:1]))
    return {i.series_id: IncidentState(
        series_id=i.series_id, opened_at=i.opened_at, last_anomaly_at=i.last_anomaly_at,
        open=i.status == Incident.Status.OPEN, anomaly_count=i.anomaly_count, flapping=i.flapping,
        recent_opens=[datetime.fromisoformat(t) for t in i.recent_opens], last_notified_at=i.last_notified_at,
        resolved_at=i.resolved_at, pk=i.pk) for i in latest}


def plan_and_write(sub: AlertSubscription, items: list[Item], now: datetime,
                   loaded: dict[int, Anomaly] | None = None) -> list[Notification]:
    config = config_for(sub)
    open_groups = set()
    if config.window or config.quiet_start is not None:
        # Only windows and quiet hours make groups that wait in the outbox (keys g:/q:); without
        # them no message can extend one, so the lookup is skipped on the latency path.
        open_groups = set(Notification.objects.select_for_update().filter(
            subscription=sub, status=Notification.Status.PENDING, group_end__isnull=False
        ).values_list("message_key", flat=True))
    planner = Planner(config, load_incidents(sub, {i.series_id for i in items}), open_groups)
    planner.feed(items)
    return write(sub, planner, now, loaded)


def write(sub: AlertSubscription, planner: Planner, now: datetime,
          loaded: dict[int, Anomaly] | None = None) -> list[Notification]:
    save_incidents(sub, [*planner.closed, *planner.incidents.values()])
    return write_messages(sub, list(planner.messages.values()), now, loaded)


def save_incidents(sub: AlertSubscription, states) -> None:
    for s in states:
        if not s.dirty:
            continue
        fields = {"status": Incident.Status.OPEN if s.open else Incident.Status.RESOLVED,
                  "last_anomaly_at": s.last_anomaly_at, "resolved_at": s.resolved_at,
                  "anomaly_count": s.anomaly_count, "flapping": s.flapping,
                  "recent_opens": [t.isoformat() for t in s.recent_opens], "last_notified_at": s.last_notified_at}
        if s.pk:
            Incident.objects.filter(pk=s.pk).update(**fields)
        else:
            s.pk = Incident.objects.create(organization_id=sub.organization_id, subscription=sub,
                                           series_id=s.series_id, opened_at=s.opened_at, **fields).pk
        s.dirty = False


def _due(msg: Message, now: datetime) -> datetime:
    if msg.hold_until:
        return max(now, msg.hold_until)
    if msg.group_end:
        return max(now, msg.group_end) + GROUP_GRACE
    return now


def destinations(sub: AlertSubscription) -> list[dict]:
    out = []
    if Channel.EMAIL in sub.channels:
        out.append({"channel": Channel.EMAIL, "email": sub.user.email})
    if Channel.WEBHOOK in sub.channels and sub.webhook_id:
        out.append({"channel": Channel.WEBHOOK, "endpoint_id": sub.webhook_id})
    return out


def _final(msg: Message) -> bool:
    """A message nothing can be added to any more (no group window, no quiet-hours hold)."""
    return msg.kind == ANOMALIES and msg.group_end is None and msg.hold_until is None


def write_messages(sub: AlertSubscription, messages: list[Message], now: datetime,
                   loaded: dict[int, Anomaly] | None = None) -> list[Notification]:
    # A group key already used by a group that has been sent: late anomalies start a follow-up.
    # Per-anomaly messages ("a:" keys) skip the lookup (one query less on the latency path): their
    # idempotency key carries the anomaly id, so an anomaly deleted and detected again still gets
    # a key of its own, and a claimed anomaly is never planned twice.
    checked = [m.key for m in messages if not m.existing and not m.key.startswith("a:")]
    used = set(Notification.objects.filter(subscription=sub, message_key__in=checked)
               .values_list("message_key", flat=True)) if checked else set()
    rows = []
    for m in messages:
        ids = [i.id for i in m.items if i.id is not None]
        if m.existing:
            for n in Notification.objects.filter(subscription=sub, message_key=m.key, status=Notification.Status.PENDING):
                n.anomaly_ids = n.anomaly_ids + [i for i in ids if i not in set(n.anomaly_ids)]
                n.series_ids = sorted(set(n.series_ids) | m.series_ids)
                n.save(update_fields=["anomaly_ids", "series_ids"])
            continue
        key = m.key if m.key not in used else f"{m.key}~{m.items[0].key if m.items else int(now.timestamp())}"
        ident = f"{key}#{ids[0]}" if key.startswith("a:") and ids else key
        payload = None
        for dest in destinations(sub):
            n = Notification(
                organization_id=sub.organization_id, idempotency_key=f"s{sub.pk}:{ident}:{dest['channel']}",
                subscription=sub, user_id=sub.user_id, kind=m.kind, message_key=key, group_end=m.group_end,
                event_ts=m.event_ts, anomaly_ids=ids, series_ids=sorted(m.series_ids), detail=m.detail,
                due_at=_due(m, now), **dest)
            if loaded is not None and _final(m):
                # Rendered here, from the anomalies already in memory, for messages that cannot
                # grow: delivery then skips a query and a write before the send (latency path).
                payload = payload or render.payload_for(n, now, loaded)
                n.payload = payload
            rows.append(n)
    created = Notification.objects.bulk_create(rows)
    if created:
        from .delivery import enqueue

        transaction.on_commit(lambda: enqueue(created, now, inline=INLINE_DELIVERIES))
    return created


def resolve_quiet_incidents(now: datetime | None = None) -> int:
    """Beat: resolves incidents quiet for their subscription's period (and notifies if asked)."""
    now = now or timezone.now()
    count = 0
    sub_ids = set(Incident.objects.filter(status=Incident.Status.OPEN, last_anomaly_at__lt=now - timedelta(seconds=60))
                  .values_list("subscription_id", flat=True))
    for sub_id in sorted(sub_ids):
        with transaction.atomic():
            sub = AlertSubscription.objects.select_for_update(of=("self",)).select_related("user").filter(
                pk=sub_id).first()
            if sub is None:
                continue
            open_series = Incident.objects.filter(subscription=sub, status=Incident.Status.OPEN).values_list(
                "series_id", flat=True)
            planner = Planner(config_for(sub), load_incidents(sub, set(open_series)))
            planner.resolve_quiet(now)
            count += sum(1 for s in planner.incidents.values() if s.dirty)
            write(sub, planner, now)
    return count
