"""Alert replay: "would this subscription have fired, and how often?" over stored history.

Runs the subscription's anomalies (stored ones, or a fresh rule backtest for rule targets)
through the very same noise-control planner as live dispatch, with empty state, and reports
the notifications per day and the precision against the organization's labels."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

from accounts.tenancy import Actor
from detection.models import Anomaly, Feedback
from detection.services.rules import backtest
from watchlists.models import Series

from ..models import AlertSubscription, Target
from ..noise import Item, Planner
from .dispatch import item_key, matches, watchlist_members
from .subscriptions import config_for

MAX_LISTED = 1000
TRUE_LABELS = {Feedback.CONFIRMED, Feedback.NEW_TREND}
FALSE_LABELS = {Feedback.FALSE_ALARM, Feedback.EXPECTED}


@dataclass
class Record:
    key: str
    series_id: int
    ts: datetime
    severity: str
    exchange: str
    rule_id: int | None
    detector_id: int | None
    feedback: str = ""
    text: str = ""
    symbol: str = ""


def _stored(actor: Actor, sub: AlertSubscription, start, end) -> list[Record]:
    qs = Anomaly.objects.for_actor(actor).filter(ts__gte=start, ts__lt=end)
    if sub.target == Target.SERIES:
        qs = qs.filter(series_id=sub.series_id)
    elif sub.target == Target.WATCHLIST:
        qs = qs.filter(series__watchlists=sub.watchlist_id)
    elif sub.target == Target.DETECTOR:
        qs = qs.filter(detector_id=sub.detector_id)
    rows = qs.values_list("series_id", "ts", "source", "metric_index", "severity", "series__exchange", "rule_id",
                          "detector_id", "feedback", "text", "series__symbol")
    return [Record(item_key(s, ts, src, m), s, ts, sev, ex, r, d, fb, text, sym)
            for s, ts, src, m, sev, ex, r, d, fb, text, sym in rows.iterator(chunk_size=5000)]


def _backtested(actor: Actor, sub: AlertSubscription, start, end) -> tuple[list[Record], bool]:
    rule = sub.rule
    result = backtest(actor=actor, rule=rule, start=start, end=end)
    source = f"rule:{rule.pk}"
    labels = dict((item_key(s, ts, src, m), fb) for s, ts, src, m, fb in Anomaly.objects.for_actor(actor).filter(
        rule_id=rule.pk, ts__gte=start, ts__lt=end).values_list("series_id", "ts", "source", "metric_index", "feedback"))
    exchanges = dict(Series.objects.filter(pk__in=result["per_series"].keys()).values_list("pk", "exchange"))
    out = []
    for a in result["anomalies"]:
        ts = datetime.fromisoformat(a["ts"])
        key = item_key(a["series"], ts, source, a["metric_index"])
        out.append(Record(key, a["series"], ts, rule.severity, exchanges.get(a["series"], ""), rule.pk, None,
                          labels.get(key, ""), a["text"], a["symbol"]))
    return out, result["truncated"]


def replay_subscription(*, actor: Actor, subscription: AlertSubscription, start: datetime, end: datetime) -> dict:
    """Stores nothing. Works for saved and unsaved subscriptions alike."""
    actor.require("view")
    started = time.perf_counter()
    sub = subscription
    truncated = False
    if sub.target == Target.RULE:
        records, truncated = _backtested(actor, sub, start, end)
    else:
        records = _stored(actor, sub, start, end)
    members = watchlist_members(actor.organization_id, [sub.watchlist_id] if sub.watchlist_id else [])
    matched = [r for r in records if matches(sub, r, members)]
    planner = Planner(config_for(sub), {}, set())
    planner.feed([Item(key=r.key, series_id=r.series_id, ts=r.ts, severity=r.severity, exchange=r.exchange)
                  for r in matched])
    planner.resolve_quiet(end)
    messages = sorted(planner.messages.values(), key=lambda m: (m.event_ts, m.key))
    notified = {i.key for m in messages for i in m.items}
    return {
        "subscription": sub.pk, "start": start.isoformat(), "end": end.isoformat(),
        "anomalies": {"count": len(matched), "truncated": truncated,
                      "listed": [{"series": r.series_id, "symbol": r.symbol, "ts": r.ts.isoformat(),
                                  "severity": r.severity, "text": r.text, "feedback": r.feedback,
                                  "notified": r.key in notified} for r in matched[:MAX_LISTED]]},
        "notifications": {"count": len(messages),
                          "per_day": dict(sorted(Counter(m.event_ts.date().isoformat() for m in messages).items())),
                          "by_kind": dict(Counter(m.kind for m in messages))},
        "suppressed": dict(planner.suppressed),
        "precision": {"all": _precision(matched), "notified": _precision([r for r in matched if r.key in notified])},
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
    }


def _precision(records) -> dict:
    tp = sum(1 for r in records if r.feedback in TRUE_LABELS)
    fp = sum(1 for r in records if r.feedback in FALSE_LABELS)
    return {"labelled": tp + fp, "true": tp, "false": fp, "precision": round(tp / (tp + fp), 4) if tp + fp else None}
