"""What detection announces (alerts and the live feed listen; detection never imports them).

anomalies_detected(organization_id, series_id, anomaly_ids): after the transaction that wrote them.
"""

from django.dispatch import Signal

anomalies_detected = Signal()
