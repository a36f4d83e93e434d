"""Prometheus metrics, and the live feed's outbox for anomalies a crashed worker never announced."""

import asyncio
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone

from detection.live import publish_unpublished
from detection.models import Anomaly
from tests.detection.conftest import EXAMPLE_POINTS
from tests.factories import SeriesFactory
from watchlists.live import series_group

pytestmark = pytest.mark.django_db


def test_metrics_count_ingest_and_detection(alice_client, client, org_a, django_capture_on_commit_callbacks):
    sensor = SeriesFactory(organization=org_a, symbol="m", kind="metric", exchange="", bar_seconds=None)
    alice_client.post("/api/v1/rules/", {"name": "hot", "metrics": "value > 65", "series": sensor.pk}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(f"/api/v1/series/{sensor.pk}/points/", EXAMPLE_POINTS, format="json")
    alice_client.post(f"/api/v1/series/{sensor.pk}/points/", [{"ts": "x", "value": 1}], format="json")
    body = client.get("/metrics").content.decode()
    for line in ('anomalyhub_points_ingested_total{kind="metric"}', 'anomalyhub_ingest_batches_total{outcome="rejected"}',
                 'anomalyhub_anomalies_total{source="rule"}', "anomalyhub_detection_chunk_seconds_bucket",
                 'anomalyhub_queue_depth{queue="detect"}', "anomalyhub_websocket_connections"):
        assert line in body, line


def test_requests_are_timed_by_route_not_by_path(alice_client, client, org_a):
    from prometheus_client import REGISTRY

    def count(status):
        labels = {"method": "GET", "route": "api/v1/series/(?P<pk>[^/.]+)/$", "status": status}
        return REGISTRY.get_sample_value("anomalyhub_http_request_seconds_count", labels) or 0

    series = [SeriesFactory(organization=org_a, symbol=f"r{i}") for i in range(2)]
    ok, missing = count("2xx"), count("4xx")
    for s in series:
        assert alice_client.get(f"/api/v1/series/{s.pk}/").status_code == 200
    assert alice_client.get("/api/v1/series/999999/").status_code == 404
    assert (count("2xx"), count("4xx")) == (ok + 2, missing + 1)
    body = client.get("/metrics").content.decode()
    assert "anomalyhub_http_request_seconds_bucket" in body
    assert f"/api/v1/series/{series[0].pk}/" not in body  # paths (ids) are never labels


def test_metrics_need_the_token_when_one_is_set(client, settings):
    settings.METRICS_TOKEN = "s3cret"
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


@pytest.mark.redis
def test_sweep_publishes_anomalies_a_crashed_worker_committed_but_never_announced(org_a):
    series = SeriesFactory(organization=org_a, kind="metric", exchange="", bar_seconds=None)
    anomaly = Anomaly.objects.create(organization=org_a, series=series, ts=timezone.now(), source="rule:1",
                                     text="value > 65")
    Anomaly.objects.filter(pk=anomaly.pk).update(created_at=timezone.now() - timedelta(seconds=30))
    fresh = Anomaly.objects.create(organization=org_a, series=series, ts=timezone.now(), source="rule:1",
                                   metric_index=1, text="too new to be stale")
    layer = get_channel_layer()

    async def listen_while_sweeping():
        # One event loop for the listener: the pub/sub layer keeps its subscriptions per loop.
        channel = await layer.new_channel()
        await layer.group_add(series_group(series.pk), channel)
        assert await sync_to_async(publish_unpublished)() == 1
        return await asyncio.wait_for(layer.receive(channel), 5)

    message = async_to_sync(listen_while_sweeping)()
    assert message["event"]["id"] == anomaly.pk and message["event"]["type"] == "anomaly"
    assert Anomaly.objects.get(pk=anomaly.pk).published_at is not None
    assert Anomaly.objects.get(pk=fresh.pk).published_at is None
    assert publish_unpublished() == 0  # published once
