"""Alert delivery metrics (on /metrics with every app's)."""

from prometheus_client import Counter

DELIVERIES = Counter("anomalyhub_alert_deliveries_total", "Alert delivery attempts by channel and outcome",
                     ["channel", "outcome"])
