"""The OpenAPI document is one a strict validator and a generated client can use.

Every response the suite's REST tests receive is checked against it (tests/openapi_conformance.py,
installed for every test by tests/conftest.py); these tests pin the document's own shape, prove
the checker refuses what the document does not declare, and drive the real server over TCP with a
client generated from the document by openapi-python-client.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import subprocess
import sys
import time

import pytest
from django.http import JsonResponse
from openapi_spec_validator import validate

from tests.benchmarks.server import live_server
from tests.factories import AnomalyFactory, RuleFactory, metric_series_with_key
from tests.openapi_conformance import check_response, schema_dict
from tests.workers import worker_env

ERROR_REF = "#/components/schemas/Error"


def _operations():
    for path, item in schema_dict()["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def test_the_document_is_valid_openapi_3_1():
    schema = schema_dict()
    assert schema["openapi"].startswith("3.1")
    validate(schema)  # openapi-spec-validator, strict


def test_every_operation_declares_the_error_body_for_the_statuses_it_can_answer():
    error = schema_dict()["components"]["schemas"]["Error"]
    assert error["required"] == ["error"]
    assert set(schema_dict()["components"]["schemas"]["ErrorDetail"]["required"]) == {"code", "message", "details"}
    for method, path, operation in _operations():
        responses = operation["responses"]
        expected = {"401", "429"}
        if "{" in path:
            expected.add("404")
        if "requestBody" in operation:
            expected |= {"400", "413", "415"}
        if method in ("POST", "PATCH", "DELETE"):
            expected |= {"403", "409"}
        missing = expected - set(responses)
        assert not missing, f"{method} {path} does not declare {sorted(missing)}"
        for status in expected:
            assert responses[status]["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (method, path)


def test_request_bodies_declare_only_the_media_types_accepted():
    paths = schema_dict()["paths"]
    assert list(paths["/api/v1/ingest/"]["post"]["requestBody"]["content"]) == ["application/json"]
    assert list(paths["/api/v1/series/"]["post"]["requestBody"]["content"]) == ["application/json"]
    assert list(paths["/api/v1/series/{id}/points/"]["post"]["requestBody"]["content"]) == ["application/json",
                                                                                           "text/csv"]


@pytest.mark.django_db
def test_a_body_of_an_undeclared_media_type_gets_415_in_the_error_shape(key_client):
    client = key_client("admin")
    for url, body in (("/api/v1/ingest/", {"points": "x"}), ("/api/v1/series/", {"symbol": "A"})):
        response = client.post(url, body, format="multipart")
        assert response.status_code == 415, response.content
        assert response.json()["error"]["code"] == "unsupported_media_type"
    response = client.post("/api/v1/series/", "symbol,kind\nA,metric\n", content_type="text/csv")
    assert response.status_code == 415


def test_points_and_features_declare_the_page_they_answer():
    paths = schema_dict()["paths"]
    for path in ("/api/v1/series/{id}/points/", "/api/v1/series/{id}/features/"):
        ok = paths[path]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok == {"$ref": "#/components/schemas/PointsPage"}
    page = schema_dict()["components"]["schemas"]["PointsPage"]
    assert set(page["required"]) >= {"series", "columns", "points", "count", "limit", "truncated", "next"}


def test_nullable_references_use_the_3_1_form():
    provider = schema_dict()["components"]["schemas"]["Series"]["properties"]["provider"]
    assert {"type": "null"} in provider["oneOf"] and "allOf" not in provider and "nullable" not in provider
    assert "nullable" not in json.dumps(schema_dict())  # 3.0's keyword means nothing in 3.1


@pytest.mark.django_db
def test_an_unlabelled_anomaly_has_null_feedback_as_declared(alice_client, org_a):
    AnomalyFactory(organization=org_a)
    (anomaly,) = alice_client.get("/api/v1/anomalies/").json()["results"]
    assert anomaly["feedback"] is None  # was "", outside the declared enum


def test_the_checker_refuses_a_body_or_status_the_document_does_not_declare():
    """The suite-wide hook can fail: a body outside the schema, and an undeclared status."""
    unlabelled = {"id": 1, "series": 1, "symbol": "A", "ts": "2026-01-01T00:00:00Z", "source": "rule:1",
                  "rule": None, "metric_index": 0, "text": "x", "observed": {}, "expected": None, "score": None,
                  "severity": "medium", "model_version": "", "feedback": "", "feedback_at": None,
                  "created_at": "2026-01-01T00:00:00Z"}
    with pytest.raises(AssertionError, match="feedback"):
        check_response("GET", "/api/v1/anomalies/1/", {}, JsonResponse(unlabelled))
    check_response("GET", "/api/v1/anomalies/1/", {}, JsonResponse({**unlabelled, "feedback": None}))
    with pytest.raises(AssertionError, match="418"):
        check_response("GET", "/api/v1/anomalies/1/", {}, JsonResponse({"error": {}}, status=418))
    with pytest.raises(AssertionError, match="code"):
        check_response("GET", "/api/v1/anomalies/1/", {}, JsonResponse({"error": {"message": "m"}}, status=404))


@pytest.fixture
def generated_client(tmp_path):
    """openapi-python-client's package for this document, generated now (offline) into tmp_path."""
    spec = tmp_path / "openapi.json"
    spec.write_text(json.dumps(schema_dict()))
    out = tmp_path / "ahclient"
    done = subprocess.run([sys.executable, "-m", "openapi_python_client", "generate", "--path", str(spec),
                           "--output-path", str(out), "--meta", "none"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    sys.path.insert(0, str(tmp_path))
    try:
        yield importlib.import_module("ahclient")
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m == "ahclient" or m.startswith("ahclient.")]:
            del sys.modules[name]


def _call(module, **kwargs):
    return importlib.import_module(f"ahclient.api.{module}").sync(**kwargs)


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_generated_client_ingests_reads_points_and_lists_anomalies_on_the_real_server(generated_client):
    key, series = metric_series_with_key("admin")
    RuleFactory(organization=series.organization, series=series, metrics="value > 100", name="spike")
    models = importlib.import_module("ahclient.models")
    start = dt.datetime(2026, 3, 2, 15, 0, tzinfo=dt.UTC)
    rows = [{"ts": (start + dt.timedelta(seconds=i)).isoformat(), "value": 500.0 if i == 5 else 1.0 + i}
            for i in range(10)]

    # Detection runs in the server's process (eager tasks): ingest -> rules -> anomaly, no worker to start.
    with live_server(worker_env(CELERY_TASK_ALWAYS_EAGER="true")) as base:
        client = generated_client.AuthenticatedClient(base_url=base, token=key, raise_on_unexpected_status=True)
        body = models.MultiIngestRequest.from_dict({"points": {series.symbol: rows}})
        (result,) = _call("ingest.ingest_create", client=client, body=body)
        assert isinstance(result, models.IngestResult) and (result.received, result.stored) == (10, 10)

        page = _call("series.series_points_retrieve", id=series.pk, client=client, start=start,
                     end=start + dt.timedelta(minutes=1), time_format=models.SeriesPointsRetrieveTimeFormat.EPOCH_MS)
        assert isinstance(page, models.PointsPage), page
        assert page.columns == ["ts", "value"] and page.count == 10 and page.truncated is False
        assert page.points[5] == [int((start + dt.timedelta(seconds=5)).timestamp() * 1000), 500.0]

        deadline, anomalies = time.monotonic() + 30, None
        while time.monotonic() < deadline:
            anomalies = _call("anomalies.anomalies_list", client=client, series=series.pk)
            if anomalies.results:
                break
            time.sleep(0.3)
        assert isinstance(anomalies, models.PaginatedAnomalyList) and len(anomalies.results) == 1
        (anomaly,) = anomalies.results
        assert anomaly.ts == start + dt.timedelta(seconds=5) and anomaly.feedback is None

        missing = _call("series.series_points_retrieve", id=series.pk + 10_000, client=client)
        assert isinstance(missing, models.Error) and missing.error.code == "not_found"
