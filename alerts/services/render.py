"""What a notification says: the versioned JSON payload (webhooks) and the email made from it.

Rendered once, when a notification is first claimed, and stored on the row: every retry sends
the very same body, and the webhook-id stays the same (derived from the idempotency key).
"""

from __future__ import annotations

import hashlib
from zoneinfo import ZoneInfo

from django.conf import settings
from django.template.loader import render_to_string
from django.utils import timezone

from detection.models import Anomaly
from detection.services.explain import explain, source_name
from watchlists.models import Watchlist

from ..models import Notification, Target
from . import links

PAYLOAD_VERSION = 1
MAX_LISTED = 20
TYPES = {
    Notification.Kind.RESOLVED: "incident.resolved",
    Notification.Kind.FLAPPING: "incident.flapping",
    Notification.Kind.TEST: "webhook.test",
    Notification.Kind.ENDPOINT_DISABLED: "webhook.disabled",
}


def message_id(notification: Notification) -> str:
    return "msg_" + hashlib.sha256(notification.idempotency_key.encode()).hexdigest()[:32]


def anomaly_detail(a: Anomaly, now=None) -> dict:
    """One anomaly in a payload: `ts` in UTC as the API, `local_time` on the series' clock (exchange
    time for market series) and `explanation`, the sentence the web UI shows."""
    return {
        "id": a.pk, "ts": a.ts.isoformat(), "severity": a.severity, "score": a.score, "text": a.text,
        "explanation": explain(a), "source_name": source_name(a),
        "local_time": _local(a.ts, a.series.exchange, "%Y-%m-%d %H:%M:%S"), "zone": _zone_name(a.series.exchange),
        "series": {"id": a.series_id, "symbol": a.series.symbol, "exchange": a.series.exchange},
        "observed": a.observed, "expected": a.expected or None, "source": a.source,
        "rule": {"id": a.rule_id, "name": a.rule.name, "clause": a.text} if a.rule_id else None,
        "detector": ({"id": a.detector_id, "kind": a.detector.kind, "model_version": a.model_version}
                     if a.detector_id else None),
        "url": f"{settings.SITE_URL}/anomalies/{a.pk}/",
        "api_url": f"{settings.SITE_URL}/api/v1/anomalies/{a.pk}/",
        "label_links": links.label_links(a, now),
    }


def _zone_name(exchange: str) -> str:
    from watchlists.calendars import timezone_of

    return f"exchange time, {timezone_of(exchange)}" if exchange else "UTC"


def _local(ts, exchange: str, fmt: str = "%H:%M") -> str:
    """The time on the series' clock; the zone is named once, where the message says which it is."""
    from watchlists.calendars import timezone_of

    zone = ZoneInfo(timezone_of(exchange)) if exchange else ZoneInfo("UTC")
    return ts.astimezone(zone).strftime(fmt)


def _summary(n: Notification, anomalies: list[Anomaly], data: dict) -> tuple[str, str]:
    sub = n.subscription
    if n.kind == Notification.Kind.TEST:
        return "webhook.test", "Test notification from AnomalyHub"
    if n.kind == Notification.Kind.ENDPOINT_DISABLED:
        return "webhook.disabled", f"Webhook endpoint disabled after repeated failures: {n.detail.get('url', '')}"
    symbols = sorted({a.series.symbol for a in anomalies}) or [str(s) for s in n.series_ids]
    if n.kind == Notification.Kind.RESOLVED:
        return TYPES[n.kind], f"Resolved: {', '.join(symbols)} quiet again after {n.detail.get('anomaly_count')} anomalies"
    if n.kind == Notification.Kind.FLAPPING:
        return TYPES[n.kind], (f"Flapping: {', '.join(symbols)} opened {n.detail.get('openings')} incidents within "
                               f"{int(n.detail.get('window_seconds', 0)) // 60} min; further alerts are held back")
    first = anomalies[0] if anomalies else None
    if sub is not None and sub.target == Target.WATCHLIST and len(symbols) >= max(2, sub.incident_min_symbols):
        total = Watchlist.objects.filter(pk=sub.watchlist_id).values_list("items", flat=True).count()
        data["incident"] = {"watchlist": {"id": sub.watchlist_id, "name": sub.watchlist.name},
                            "symbols": symbols, "moved": len(symbols), "of": total}
        return "incident.opened", (f"{len(symbols)} of {total} symbols moved at {_local(first.ts, first.series.exchange)} "
                                   f"({_zone_name(first.series.exchange)})")
    if len(anomalies) == 1:
        return "anomalies.detected", (f"{first.series.symbol}: {explain(first)} at "
                                      f"{_local(first.ts, first.series.exchange)} ({_zone_name(first.series.exchange)}; "
                                      f"{first.severity})")
    return "anomalies.detected", f"{len(n.anomaly_ids)} anomalies on {len(symbols)} series ({', '.join(symbols[:5])})"


def payload_for(n: Notification, now=None, loaded: dict[int, Anomaly] | None = None) -> dict:
    """`loaded`: the anomalies by id when the caller has them (with series, rule and detector)."""
    now = now or timezone.now()
    ids = list(n.anomaly_ids)
    if loaded is not None and all(i in loaded for i in ids[:MAX_LISTED]):
        anomalies = sorted((loaded[i] for i in ids[:MAX_LISTED]), key=lambda a: (a.ts, a.pk))
    else:
        anomalies = list(Anomaly.objects.filter(organization_id=n.organization_id, pk__in=ids[:MAX_LISTED])
                         .select_related("series", "rule", "detector").order_by("ts", "pk"))
    data = {"notification_id": message_id(n), "organization_id": n.organization_id,
            "subscription": {"id": n.subscription_id, "name": str(n.subscription)} if n.subscription_id else None,
            "event_time": n.event_ts.isoformat() if n.event_ts else None,
            "anomaly_count": len(ids), "truncated": len(ids) > MAX_LISTED,
            "anomalies": [anomaly_detail(a, now) for a in anomalies]}
    kind, summary = _summary(n, anomalies, data)
    data["summary"] = summary
    if n.kind in (Notification.Kind.RESOLVED, Notification.Kind.FLAPPING):
        data["incident"] = dict(n.detail)
    if n.subscription_id:
        data["snooze_links"] = links.snooze_links(n.subscription, now)
    return {"version": PAYLOAD_VERSION, "type": kind, "timestamp": now.isoformat(), "data": data}


def email_for(payload: dict) -> tuple[str, str, str]:
    """(subject, plain text, HTML) of a rendered payload."""
    context = {"p": payload, "d": payload["data"], "site_url": settings.SITE_URL}
    subject = f"[AnomalyHub] {payload['data']['summary']}"[:200]
    return (subject, render_to_string("alerts/notification.txt", context),
            render_to_string("alerts/notification.html", context))
