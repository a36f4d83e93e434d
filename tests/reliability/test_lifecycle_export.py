"""Export of an organization's points, anomalies and rules as CSV and JSON: complete, parseable,
admins only, and never another organization's data."""

import csv
import io
import json

import pytest
from django.conf import settings
from django.test import override_settings

from detection import export
from tests.conftest import client_for
from tests.factories import AnomalyFactory, RuleFactory, SeriesFactory
from tests.reliability.report import record
from tests.sessions import other_session

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
    allowed = key_client("admin").get("/api/v1/export/?dataset=rules")
    assert allowed.status_code == 200
    b"".join(allowed.streaming_content)  # read to the end, the test client closes it: its export slot is back
    bad = two_orgs.get("/api/v1/export/?dataset=passwords")
    assert bad.status_code == 400 and bad.json()["error"]["details"] == {
        "dataset": ["Choose one of ['points', 'anomalies', 'rules']."]}
    assert two_orgs.get("/api/v1/export/?dataset=rules&file_format=xlsx").status_code == 400


def test_export_writes_times_and_values_exactly(two_orgs, org_a):
    """The format clients parse: ISO 8601 in UTC with microseconds only when there are some, a point's
    own kind's columns (the CSV leaves the others empty, the JSON leaves them out)."""
    series = SeriesFactory(organization=org_a, symbol="EXACT", kind="metric", exchange="", bar_seconds=None)
    two_orgs.post(f"/api/v1/series/{series.pk}/points/", [{"ts": "2024-03-04T05:06:07Z", "value": 1.5},
                                                        {"ts": "2024-03-04T05:06:08.25Z", "value": -2}], format="json")
    lines = [line for line in _text(two_orgs, "points", "csv").splitlines() if line.startswith("EXACT,")]
    assert lines == ["EXACT,metric,2024-03-04T05:06:07+00:00,,,,,,,,,1.5",
                     "EXACT,metric,2024-03-04T05:06:08.250000+00:00,,,,,,,,,-2.0"]
    rows = [row for row in json.loads(_text(two_orgs, "points", "json")) if row["symbol"] == "EXACT"]
    assert rows == [{"symbol": "EXACT", "kind": "metric", "ts": "2024-03-04T05:06:07+00:00", "value": 1.5},
                    {"symbol": "EXACT", "kind": "metric", "ts": "2024-03-04T05:06:08.250000+00:00", "value": -2.0}]
    trade = next(row for row in json.loads(_text(two_orgs, "points", "json")) if row["kind"] == "trade")
    assert set(trade) == {"symbol", "kind", "ts", "price", "size", "trade_id"}


@pytest.mark.parametrize("file_format", ["csv", "json"])
def test_export_streams_a_chunk_per_batch_of_rows_not_per_row(two_orgs, monkeypatch, file_format):
    """Each chunk is a hop from the request's thread to the server's event loop: one per row made a
    JSON export of a million points take minutes."""
    monkeypatch.setattr(export, "CHUNK_ROWS", 7)
    response = two_orgs.get(f"/api/v1/export/?dataset=points&file_format={file_format}")
    chunks = [chunk for chunk in response.streaming_content if chunk]
    text = b"".join(chunks).decode()
    rows = list(csv.DictReader(io.StringIO(text))) if file_format == "csv" else json.loads(text)
    assert [row["kind"] for row in rows] == ["trade"] * 5 + ["metric"] * 40
    assert [float(row["value"]) for row in rows[5:]] == [m / 2 for m in range(40)]  # in time order
    # 5 trades in 1 batch, 40 metric points in 6: 7 chunks, plus JSON's opening and closing brackets.
    assert len(chunks) == (7 if file_format == "csv" else 9)


@override_settings(ORG_MAX_EXPORTS=100)  # the per-organization cap: tests/reliability/test_abuse_cost.py
def test_exports_beyond_the_servers_share_of_threads_wait_their_turn(two_orgs):
    """Exports stream from the HTTP threads the API and ingest share: past EXPORT_STREAMS at once, the
    next is refused with 429 and Retry-After, and the API still answers."""
    held = [two_orgs.get("/api/v1/export/?dataset=rules") for _ in range(settings.EXPORT_STREAMS)]
    try:
        assert [r.status_code for r in held] == [200] * settings.EXPORT_STREAMS
        refused = two_orgs.get("/api/v1/export/?dataset=points&file_format=json")
        assert refused.status_code == 429 and refused["Retry-After"] == "10"
        assert refused.json()["error"] == {
            "code": "rate_limited", "details": {},
            "message": f"This server is already streaming {settings.EXPORT_STREAMS} export(s), as many as it "
                       "runs at once; retry in 10 seconds."}
        assert two_orgs.get("/api/v1/export/?dataset=passwords").status_code == 400  # checked first, as ever
        assert two_orgs.get("/api/v1/series/").status_code == 200
        b"".join(held.pop().streaming_content)  # read to the end: the server closes it, the slot is back
        again = two_orgs.get("/api/v1/export/?dataset=rules")
        held.append(again)
        assert again.status_code == 200
        assert two_orgs.get("/api/v1/export/?dataset=rules").status_code == 429  # full again
    finally:
        for response in held:  # read to the end, the test client closes them (response.close() itself
            b"".join(response.streaming_content)  # would also close the test's database connection)
    assert "AAA hot" in _text(two_orgs, "rules", "csv")  # every slot back


def _text(client, dataset, file_format) -> str:
    response = client.get(f"/api/v1/export/?dataset={dataset}&file_format={file_format}")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content).decode()


@pytest.mark.django_db(transaction=True)
def test_an_export_being_downloaded_holds_no_lock_on_the_ticks(alice, org_a, monkeypatch):
    """A download goes at its client's pace, for minutes or hours. Meanwhile the export holds no
    transaction and no lock (PostgreSQL keeps the cursor's rows past its statement): partition DDL,
    which needs the tick table to itself, goes through, and vacuum is not held back."""
    monkeypatch.setattr(export, "CHUNK_ROWS", 7)
    client = client_for(alice)
    series = SeriesFactory(organization=org_a, symbol="HELD", kind="trade", exchange="", bar_seconds=None)
    client.post(f"/api/v1/series/{series.pk}/points/",
                [{"ts": f"2024-01-02T10:00:{s:02d}Z", "price": 1 + s, "size": 1} for s in range(30)], format="json")
    chunks = iter(client.get("/api/v1/export/?dataset=points&file_format=csv").streaming_content)
    first = next(chunks)  # the download has begun, and stalls here
    with other_session() as other:
        other.execute("SET lock_timeout = '2s'")
        other.execute("LOCK TABLE watchlists_tick IN ACCESS EXCLUSIVE MODE")  # LockNotAvailable if held
        other.rollback()
    text = (first + b"".join(chunks)).decode()
    assert text.startswith("symbol,kind,ts,") and text.count("\nHELD,trade,") == 30
