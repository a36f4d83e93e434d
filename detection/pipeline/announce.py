"""Announce: after the chunk's commit, what it found goes to detection's one signal."""

from __future__ import annotations

from ..models import Anomaly
from ..signals import anomalies_detected


def announce(organization_id: int, anomalies: list[Anomaly], created: list[Anomaly]) -> None:
    """Sends anomalies_detected once for the committed transaction (payload: detection.signals)."""
    anomalies_detected.send(sender=Anomaly, organization_id=organization_id, anomalies=anomalies, created=created)
