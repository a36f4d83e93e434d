"""/metrics for Prometheus: every app's metrics, plus queue depths read from the broker at scrape
time. Protected by METRICS_TOKEN (Bearer) when set; production should set it.

Several processes (web, workers) each count their own: set PROMETHEUS_MULTIPROC_DIR to a shared
directory and the web process aggregates them (prometheus_client's multiprocess mode)."""

import hmac
import os

from django.conf import settings
from django.http import HttpResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

QUEUES = ("ingest", "detect", "train", "alerts")


class QueueDepthCollector:
    """Messages waiting per Celery queue (Redis lists named after the queues)."""

    def collect(self):
        gauge = GaugeMetricFamily("anomalyhub_queue_depth", "Tasks waiting per queue", labels=["queue"])
        if settings.REDIS_URL:
            import redis

            try:
                client = redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1)
                for queue in QUEUES:
                    gauge.add_metric([queue], client.llen(queue))
            except redis.RedisError:
                pass  # the gauge is absent rather than wrong; /readyz reports Redis itself
        yield gauge


def _registry():
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return registry


_queue_collector = QueueDepthCollector()


def metrics_view(request):
    token = settings.METRICS_TOKEN
    if token:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given, token):
            return HttpResponse("metrics need the METRICS_TOKEN bearer token\n", status=401, content_type="text/plain")
    registry = _registry()
    body = generate_latest(registry) + generate_latest(_QueueRegistry())
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)


class _QueueRegistry(CollectorRegistry):
    def __init__(self):
        super().__init__(auto_describe=False)
        self.register(_queue_collector)
