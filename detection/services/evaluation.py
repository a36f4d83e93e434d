"""A detector's record on the organization's own labels: its events over a time range, and the
precision and recall people's feedback makes computable.

- Events: the detector's anomalies (from live detection and from history runs, which are the
  backtest of a model over stored points) merged into one event when no more than
  event_gap(series) separates them, as the Anomalies page groups incidents.
- Precision: over the events someone labelled. An event with any anomaly labelled confirmed or
  new_trend is right; one labelled only false_alarm or expected is noise; the rest are unlabelled.
  None when no event is labelled.
- Recall: over the incidents people confirmed on the series in the range, whichever rule or
  detector raised them (confirmed anomalies merged by the same gap). One counts as found when an
  event of this detector overlaps it, give or take the gap. None when nothing was confirmed.
  Incidents no rule or detector raised cannot be labelled, so this is recall over what is known.

Reads at most MAX_ANOMALIES anomalies of the detector in the range (the newest ones) and lists
the newest MAX_EVENTS events; `truncated` says when the range held more.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from anomalyhub.lib.errors import InvalidError
from watchlists.models import Series

from ..models import SEVERITY_RANK, Anomaly, Detector, Feedback

GOOD = (Feedback.CONFIRMED, Feedback.NEW_TREND)
NOISE = (Feedback.FALSE_ALARM, Feedback.EXPECTED)
DEFAULT_RANGE = timedelta(days=30)
MAX_ANOMALIES = 20_000
MAX_EVENTS = 500


class EvaluationInvalid(InvalidError):
    code = "invalid_range"


def event_gap(series: Series) -> timedelta:
    """The longest quiet spell inside one event: ANOMALY_GROUP_GAP_SECONDS, or three bars of a
    slower series."""
    return timedelta(seconds=max(settings.ANOMALY_GROUP_GAP_SECONDS, 3 * (series.bar_seconds or 0)))


@dataclass
class Event:
    start: datetime
    end: datetime
    anomaly_id: int  # the first anomaly: its page shows the chart around the event
    points: int = 0
    max_score: float | None = None
    severity: str = "low"
    labels: dict[str, int] = field(default_factory=dict)

    @property
    def verdict(self) -> str:
        if any(self.labels.get(label) for label in GOOD):
            return "true"
        return "false" if any(self.labels.get(label) for label in NOISE) else "unlabelled"

    def add(self, ts: datetime, score: float | None, severity: str, feedback: str) -> None:
        self.end, self.points = ts, self.points + 1
        if score is not None and (self.max_score is None or score > self.max_score):
            self.max_score = score
        if SEVERITY_RANK[severity] > SEVERITY_RANK[self.severity]:
            self.severity = severity
        if feedback:
            self.labels[feedback] = self.labels.get(feedback, 0) + 1


def merge(rows, gap: timedelta) -> list[Event]:
    """(pk, ts, score, severity, feedback) rows in time order -> events, oldest first."""
    events: list[Event] = []
    for pk, ts, score, severity, feedback in rows:
        if not events or ts - events[-1].end > gap:
            events.append(Event(start=ts, end=ts, anomaly_id=pk, severity=severity))
        events[-1].add(ts, score, severity, feedback)
    return events


def _overlaps(events: list[Event], incident: Event, gap: timedelta) -> bool:
    """Whether an event overlaps the incident, give or take the gap. Events are disjoint and in
    time order, so the last one starting before the incident's end has the latest end of those."""
    i = bisect_right(events, incident.end + gap, key=lambda e: e.start) - 1
    return i >= 0 and events[i].end + gap >= incident.start


def default_range(series: Series) -> tuple[datetime, datetime]:
    end = series.last_point_at + timedelta(microseconds=1) if series.last_point_at else timezone.now()
    return end - DEFAULT_RANGE, end


def evaluate_detector(detector: Detector, *, start: datetime | None = None, end: datetime | None = None) -> dict:
    """Events, precision and recall of a detector over [start, end) (default: the series' last 30
    days). Read-only; the caller has scoped the detector to the actor's organization."""
    series = detector.series
    default_start, default_end = default_range(series)
    start, end = start or default_start, end or default_end
    if end <= start:
        raise EvaluationInvalid("The range ends before it starts.", details={"end": ["end must be after start."]})
    gap = event_gap(series)
    columns = ("pk", "ts", "score", "severity", "feedback")
    newest = list(Anomaly.objects.filter(organization_id=detector.organization_id, detector=detector,
                                         ts__gte=start, ts__lt=end).order_by("-ts", "-pk")
                  .values_list(*columns)[:MAX_ANOMALIES + 1])
    truncated = len(newest) > MAX_ANOMALIES
    events = merge(reversed(newest[:MAX_ANOMALIES]), gap)
    confirmed = Anomaly.objects.filter(organization_id=detector.organization_id, series=series, feedback__in=GOOD,
                                       ts__gte=start, ts__lt=end).order_by("ts", "pk").values_list(*columns)
    incidents = merge(confirmed[:MAX_ANOMALIES], gap)
    found = sum(_overlaps(events, i, gap) for i in incidents)
    verdicts = [e.verdict for e in events]
    right, noise = verdicts.count("true"), verdicts.count("false")
    return {
        "start": start, "end": end, "gap_seconds": gap.total_seconds(), "anomalies": min(len(newest), MAX_ANOMALIES),
        "truncated": truncated or len(events) > MAX_EVENTS, "events_total": len(events),
        "labelled_events": right + noise, "true_events": right, "false_events": noise,
        "precision": right / (right + noise) if right + noise else None,
        "incidents": len(incidents), "incidents_found": found,
        "recall": found / len(incidents) if incidents else None,
        "events": [{**asdict(e), "verdict": e.verdict} for e in reversed(events[-MAX_EVENTS:])],
    }
