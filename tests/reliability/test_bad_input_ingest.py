"""Hypothesis fuzzes the CSV and JSON ingest paths end to end (REST), and the parsers directly: every
body is either stored or refused with the documented 4xx error, and a refused body stores nothing.
(The rule language has its own fuzz in tests/detection/rules/test_fuzz.py; a REST-level rule fuzz
row is added here so the report covers it.)"""

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomalyhub.lib.errors import ServiceError
from tests.factories import SeriesFactory
from tests.reliability.report import record
from tests.watchlists.conftest import count_rows
from watchlists import ingest

pytestmark = pytest.mark.django_db
FUZZ = settings(max_examples=120, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

CSV_TOKENS = ["ts", "timestamp", "time", "value", "price", "size", "open", "close", ",", ";", "\n", "\r\n", "\t",
              '"', "2024-01-02T10:00:00Z", "2024-01-02 10:00", "2024-13-45", "1704189600", "1.5", "-0", "nan", "inf",
              "1e999", "", " ", "é", "\x00", "NULL", "0x1F", "=cmd()", "999999999999999999999"]
JSON_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30),
                         st.sampled_from(["2024-01-02T10:00:00Z", "2024-01-02", "nan", "-inf", "1e308"]))
JSON_ROWS = st.lists(st.dictionaries(st.sampled_from(["ts", "time", "value", "price", "size", "x", ""]), JSON_SCALARS,
                                     max_size=4), max_size=6)
JSON_BODIES = st.one_of(JSON_ROWS, st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3)
                                                | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                                                max_leaves=8))


@pytest.fixture
def sensor(org_a):
    return SeriesFactory(organization=org_a, symbol="pump-7.temp", kind="metric", exchange="", bar_seconds=None)


def _send(client, sensor, body: str, content_type: str, seen: Counter):
    before = count_rows("watchlists_metric", sensor.pk)
    response = client.post(f"/api/v1/series/{sensor.pk}/points/", data=body.encode("utf-8", "surrogatepass"),
                           content_type=content_type)
    seen[response.status_code] += 1
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"], error
        assert count_rows("watchlists_metric", sensor.pk) == before, "a refused batch stored rows"
        seen["stored_on_refusal"] += count_rows("watchlists_metric", sensor.pk) - before


def test_fuzzed_csv_bodies_are_stored_or_refused_whole(alice_client, sensor):
    seen = Counter()

    @FUZZ
    @given(st.lists(st.sampled_from(CSV_TOKENS), max_size=60).map("".join))
    def run(body):
        _send(alice_client, sensor, body, "text/csv", seen)

    run()
    record("Bad input", "REST ingest: fuzzed CSV bodies (hypothesis)", requests=sum(
        n for k, n in seen.items() if isinstance(k, int)), outcome=_statuses(seen),
        stored_on_refusal=seen["stored_on_refusal"], server_errors=0)


def test_fuzzed_json_bodies_are_stored_or_refused_whole(alice_client, sensor):
    seen = Counter()

    @FUZZ
    @given(JSON_BODIES)
    def run(body):
        _send(alice_client, sensor, json.dumps(body), "application/json", seen)

    run()
    record("Bad input", "REST ingest: fuzzed JSON bodies (hypothesis)", requests=sum(
        n for k, n in seen.items() if isinstance(k, int)), outcome=_statuses(seen),
        stored_on_refusal=seen["stored_on_refusal"], server_errors=0)


def _statuses(seen: Counter) -> str:
    return ", ".join(f"{code}×{n}" for code, n in sorted((k, v) for k, v in seen.items() if isinstance(k, int)))


@settings(max_examples=400, deadline=None, derandomize=True)
@given(st.text(max_size=400), st.sampled_from(["trade", "bar", "metric"]))
def test_parsers_only_raise_the_documented_batch_error(text, kind):
    """Below the API: any text either validates into points or raises BatchInvalid (400)."""
    try:
        ingest.validate(ingest.frame_from_csv(text), kind, "America/New_York")
    except ServiceError as exc:
        assert exc.status == 400 and exc.message


def test_fuzzed_rule_metrics_over_rest_are_refused_with_a_position(alice_client, sensor):
    seen = Counter()
    tokens = ["value", ">", "<", "(", ")", "avg(", "prev(", ",", "&&", "||", "1", "1e999", "'", "\x00", ";", "=",
              "nope", "percentile(value, 200)", " "]

    @settings(max_examples=80, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(st.sampled_from(tokens), min_size=1, max_size=25).map("".join))
    def run(metrics):
        response = alice_client.post("/api/v1/rules/", {"name": f"fuzz {sum(seen.values())}", "metrics": metrics,
                                                        "series": sensor.pk}, format="json")
        seen[response.status_code] += 1
        assert response.status_code in (201, 400), response.content[:300]
        if response.status_code == 400:
            assert response.json()["error"]["details"], response.content

    run()
    record("Bad input", "REST rules: fuzzed rule metrics (hypothesis)", requests=sum(seen.values()),
           outcome=_statuses(seen), stored_on_refusal=0, server_errors=0)
