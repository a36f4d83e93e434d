"""Anomaly queries and feedback."""

from django.utils import timezone

from accounts.tenancy import Actor, get_for_actor

from ..models import Anomaly


def filter_anomalies(qs, *, series=None, watchlist=None, rule=None, source=None, severity=None, feedback=None,
                     start=None, end=None):
    """Applies the documented filters to an already tenant-scoped queryset."""
    if series:
        qs = qs.filter(series_id=series)
    if watchlist:
        qs = qs.filter(series__watchlists=watchlist)
    if rule:
        qs = qs.filter(rule_id=rule)
    if source:
        qs = qs.filter(source=source) if ":" in source else qs.filter(source__startswith=f"{source}:")
    if severity:
        qs = qs.filter(severity=severity)
    if feedback:
        qs = qs.filter(feedback="" if feedback == "none" else feedback)
    if start:
        qs = qs.filter(ts__gte=start)
    if end:
        qs = qs.filter(ts__lt=end)
    return qs


def label_anomaly(*, actor: Actor, anomaly_id, label: str) -> Anomaly:
    """Records a user's label (confirmed / expected / false_alarm / new_trend); the last label wins."""
    anomaly = get_for_actor(Anomaly.objects.all(), actor, anomaly_id, "change")
    anomaly.feedback = label
    anomaly.feedback_by = actor.credited_user
    anomaly.feedback_at = timezone.now()
    anomaly.save(update_fields=["feedback", "feedback_by", "feedback_at"])
    return anomaly
