"""Prometheus metrics of detection and the live feed (exposed by anomalyhub's /metrics)."""

from prometheus_client import Counter, Gauge, Histogram

ANOMALIES = Counter("anomalyhub_anomalies_total", "Anomalies written", ["source"])
CHUNK_SECONDS = Histogram("anomalyhub_detection_chunk_seconds",
                          "Detection latency: one chunk read, evaluated and committed",
                          buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
REWINDS = Counter("anomalyhub_detection_rewinds_total",
                  "Series streams rewound to replay points committed behind their cursor")
POINTS_DETECTED = Counter("anomalyhub_detection_points_total", "Points run through detection")
WS_CONNECTIONS = Gauge("anomalyhub_websocket_connections", "Open live-feed connections", multiprocess_mode="livesum")
WS_MESSAGES = Counter("anomalyhub_websocket_messages_total", "Live-feed events sent", ["type"])
WS_DROPPED = Counter("anomalyhub_websocket_dropped_total", "Live-feed connections dropped", ["reason"])
