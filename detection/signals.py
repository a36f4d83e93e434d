"""What detection announces (alerts and the live feed listen; detection never imports them).

anomalies_detected(sender=Anomaly, organization_id, anomalies, created): once per committed
transaction that wrote anomalies (a streaming chunk, a history run's chunk), sent after commit.
- anomalies: every anomaly the transaction's detection produced (Anomaly instances of the
  organization; key (series_id, ts, source, metric_index)), stored now or before (a replay);
- created: those of them this transaction stored, with ids.
Receivers: detection.receivers (the live feed), alerts.receivers (dispatch).
"""

from django.dispatch import Signal

anomalies_detected = Signal()
