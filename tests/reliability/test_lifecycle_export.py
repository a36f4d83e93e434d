"""Export of an organization's points, anomalies and rules as CSV and JSON: complete, parseable,
admins only, and never another organization's data."""

import csv
import io
import json

import pytest

from tests.conftest import client_for
from tests.factories import AnomalyFactory, RuleFactory, SeriesFactory
from tests.reliability.report import record

pytestmark = pytest.mark.django_db


def _download(client, dataset, file_format):
    response = client.get(f"/api/v1/export/?dataset={dataset}&file_format={file_format}")
    assert response.status_code == 200, response.content
    assert f".{file_format}" in response["Content-Disposition"]
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text))) if file_format == "csv" else json.loads(text)


def _populate(org, client, symbol):
    sensor = SeriesFactory(organization=org, symbol=f"{symbol}.temp", kind="metric", exchange="", bar_seconds=None)
    ticks = SeriesFactory(organization=org, symbol=symbol, kind="trade", exchange="", bar_seconds=None)
    client.post(f"/api/v1/series/{sensor.pk}/points/",
                [{"ts": f"2024-01-02T10:{m:02d}:00Z", "value": m / 2} for m in range(40)], format="json")
    client.post(f"/api/v1/series/{ticks.pk}/points/",
                [{"ts": "2024-01-02T10:00:00Z", "price": 10.5, "size": 100, "trade_id": f"t{i}"} for i in range(5)],
                format="json")
    RuleFactory(organization=org, series=sensor, metrics="value > 15", name=f"{symbol} hot")
    AnomalyFactory(organization=org, series=sensor, text=f"{symbol} fired", observed={"value": 19.5})
    return sensor, ticks


@pytest.fixture
def two_orgs(alice, carol, org_a, org_b):
    alice_client = client_for(alice)
    _populate(org_a, alice_client, "AAA")
    _populate(org_b, client_for(carol), "BBB")
    return alice_client


@pytest.mark.parametrize("file_format", ["csv", "json"])
def test_export_has_every_point_anomaly_and_rule_of_the_organization(two_orgs, file_format):
    points = _download(two_orgs, "points", file_format)
    anomalies = _download(two_orgs, "anomalies", file_format)
    rules = _download(two_orgs, "rules", file_format)
    metric = [p for p in points if p["kind"] == "metric"]
    trades = [p for p in points if p["kind"] == "trade"]
    assert len(metric) == 40 and len(trades) == 5
    assert sorted(float(p["value"]) for p in metric) == [m / 2 for m in range(40)]
    assert metric[0]["symbol"] == "AAA.temp" and metric[0]["ts"].startswith("2024-01-02T10:00:00")
    assert sorted(p["trade_id"] for p in trades) == [f"t{i}" for i in range(5)]
    assert [a["text"] for a in anomalies] == ["AAA fired"]
    observed = anomalies[0]["observed"]
    assert (json.loads(observed) if file_format == "csv" else observed) == {"value": 19.5}
    assert [(r["name"], r["metrics"], r["series"]) for r in rules] == [("AAA hot", "value > 15", "AAA.temp")]
    record("Data lifecycle", f"Export as {file_format.upper()}",
           exported=f"{len(points)} points, {len(anomalies)} anomalies, {len(rules)} rules",
           expected="45 points, 1 anomaly, 1 rule", other_tenant_rows=0)


def test_export_never_contains_another_organizations_data(two_orgs, carol):
    carol_client = client_for(carol)
    texts = [b"".join(carol_client.get(f"/api/v1/export/?dataset={d}&file_format={f}").streaming_content).decode()
             for d in ("points", "anomalies", "rules") for f in ("csv", "json")]
    assert all("BBB" in t for t in texts[:4]) and not any("AAA" in t for t in texts)


def test_export_is_for_admins_and_says_what_is_wrong(two_orgs, bob_client, key_client):
    assert bob_client.get("/api/v1/export/?dataset=rules").status_code == 403
    assert key_client("read").get("/api/v1/export/?dataset=rules").status_code == 403
    assert key_client("admin").get("/api/v1/export/?dataset=rules").status_code == 200
    bad = two_orgs.get("/api/v1/export/?dataset=passwords")
    assert bad.status_code == 400 and bad.json()["error"]["details"] == {
        "dataset": ["Choose one of ['points', 'anomalies', 'rules']."]}
    assert two_orgs.get("/api/v1/export/?dataset=rules&file_format=xlsx").status_code == 400
