"""Prometheus metrics of ingest (exposed by anomalyhub's /metrics)."""

from prometheus_client import Counter, Histogram

POINTS_INGESTED = Counter("anomalyhub_points_ingested_total", "Points stored", ["kind"])
BATCHES = Counter("anomalyhub_ingest_batches_total", "Ingest batches by outcome", ["outcome"])
INGEST_SECONDS = Histogram("anomalyhub_ingest_seconds", "Time to store one batch (validated to committed)",
                           buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
