"""What one ingest may ask of the store: times it accepts (and stores exactly as sent), partitions it
may open, CSV columns, and values that are numbers. Properties over any time, any span, any width."""

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.factories import SeriesFactory
from tests.graphql.conftest import session_client
from tests.watchlists.conftest import count_rows
from watchlists.store.timeconv import STORE_MAX, STORE_MIN, to_us

pytestmark = pytest.mark.django_db
PROPERTY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
NOW = datetime.now(UTC)
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)


def _post(client, series, body, content_type="application/json"):
    data = json.dumps(body) if content_type == "application/json" else body
    return client.post(f"/api/v1/series/{series.pk}/points/", data=data, content_type=content_type)


def _stored_times(series) -> list[datetime]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT ts FROM watchlists_metric WHERE series_id = %s ORDER BY ts", [series.pk])
        return [row[0] for row in cursor.fetchall()]


def _refused(response, code: str, row: int | None = None) -> dict:
    assert response.status_code == 400, (response.status_code, response.content[:400])
    error = response.json()["error"]
    assert error["code"] == code and error["message"], error
    if row is not None:
        assert row in [e["row"] for e in error["details"]["errors"]], error
    return error


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


ANY_TIME = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59),
                        timezones=st.just(UTC))


@given(when=st.one_of(ANY_TIME, st.datetimes(min_value=datetime(1969, 6, 1), max_value=datetime(2030, 1, 1),
                                             timezones=st.just(UTC))),
       as_epoch_ms=st.booleans())
@PROPERTY
def test_any_time_is_stored_exactly_as_sent_or_refused_with_its_row_and_the_accepted_range(
        alice_client, sensor, when, as_epoch_ms):
    when = when.replace(microsecond=when.microsecond // 1000 * 1000)  # ms: what epoch-ms can carry
    before = _stored_times(sensor)
    ts = to_us(when) // 1000 if as_epoch_ms else _iso(when)
    # Row 1: an accepted time in the same partition as `when` when that is accepted (a batch also may
    # not open too many partitions), sent in the same format (one batch, one time format).
    near = min(max(when, EARLIEST), NOW)
    first = to_us(near) // 1000 if as_epoch_ms else _iso(near)
    response = _post(alice_client, sensor, [{"ts": first, "value": 1}, {"ts": ts, "value": 2}])
    accepted = EARLIEST <= when <= datetime.now(UTC) + timedelta(days=1)
    if accepted:
        assert response.status_code == 201, response.content[:300]
        assert when in _stored_times(sensor)
    else:
        error = _refused(response, "time_out_of_range", row=2)
        assert error["details"]["accepted"]["from"] == "1970-01-01T00:00:00Z"
        assert "outside the accepted range 1970-01-01T00:00:00Z .. " in error["details"]["errors"][0]["reason"]
        assert _stored_times(sensor) == before


@pytest.mark.parametrize("sent", ["9999-12-31T00:00:00Z", "0001-01-01T00:00:00Z", 253_402_300_800_000,
                                  -62_135_596_800_001, 1e300, -1e300])
def test_times_the_store_cannot_hold_are_refused_in_json_and_csv(alice_client, sensor, sent):
    _refused(_post(alice_client, sensor, [{"ts": sent, "value": 1}]), "time_out_of_range", row=1)
    # CSV times are ISO-8601 text: a number there is no time at all (refused as unparsable).
    _refused(_post(alice_client, sensor, f"ts,value\n{sent},1\n", "text/csv"),
             "time_out_of_range" if isinstance(sent, str) else "invalid_batch", row=1)
    assert count_rows("watchlists_metric", sensor.pk) == 0


def test_graphql_ingest_refuses_a_time_the_store_cannot_hold(alice, sensor):
    body = session_client(alice).data(
        "mutation($id: ID!, $p: JSON!) { ingestPoints(seriesId: $id, points: $p) { "
        "... on InputError { code fields { row message } } ... on IngestResultType { stored } } }",
        id=str(sensor.pk), p=[{"ts": "9999-12-31T00:00:00Z", "value": 1}])["ingestPoints"]
    assert body["code"] == "time_out_of_range"
    assert any(f["row"] == 1 and "accepted range" in f["message"] for f in body["fields"]), body
    assert count_rows("watchlists_metric", sensor.pk) == 0


def test_a_series_with_history_from_accepts_older_points_and_no_earlier(alice_client, org_a):
    old = SeriesFactory(organization=org_a, symbol="CPI", kind="metric", exchange="", bar_seconds=None,
                        history_from=datetime(1913, 1, 1, tzinfo=UTC))
    assert _post(alice_client, old, [{"ts": "1913-01-15T00:00:00Z", "value": 9.8}]).status_code == 201
    error = _refused(_post(alice_client, old, [{"ts": "1912-12-31T00:00:00Z", "value": 9.7}]),
                     "time_out_of_range", row=1)
    assert error["details"]["accepted"]["from"] == "1913-01-01T00:00:00Z"
    assert _stored_times(old) == [datetime(1913, 1, 15, tzinfo=UTC)]


@pytest.mark.parametrize("history_from", ["1699-12-31T00:00:00Z", "2201-01-01T00:00:00Z"])
def test_history_from_must_lie_in_the_stores_range(alice_client, history_from):
    response = alice_client.post("/api/v1/series/", {"symbol": "OLD", "kind": "metric", "exchange": "",
                                                     "history_from": history_from}, format="json")
    assert response.status_code == 400 and "history_from" in response.json()["error"]["details"], response.content


@given(years=st.integers(1, 60), first=st.integers(1800, 1960))
@PROPERTY
def test_a_batch_opens_at_most_the_partition_limit_and_a_refusal_creates_none(alice_client, org_a, years, first):
    """Metrics are partitioned by year: a batch spanning `years` years needs the missing ones of them."""
    series, _ = SeriesFactory._meta.model.objects.get_or_create(
        organization=org_a, symbol="LONG", kind="metric", exchange="",
        defaults={"history_from": datetime(1800, 1, 1, tzinfo=UTC)})
    last = first + years - 1
    missing = years - _partitions(first, last)  # earlier examples (same transaction) made some
    body = [{"ts": f"{first}-06-01T00:00:00Z", "value": 1}, {"ts": f"{last}-06-01T00:00:00Z", "value": 2}]
    with override_settings(INGEST_MAX_NEW_PARTITIONS=24):
        response = _post(alice_client, series, body)
    if missing <= 24:
        assert response.status_code == 201, response.content[:300]
        assert _partitions(first, last) == years
    else:
        error = _refused(response, "too_many_partitions")
        assert error["details"] == {"new_partitions": missing, "limit": 24}
        assert _partitions(first, last) == years - missing


def _partitions(first_year: int, last_year: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                       "WHERE i.inhparent = 'watchlists_metric'::regclass AND c.relname = ANY(%s)",
                       [[f"watchlists_metric_p{y:04d}" for y in range(first_year, last_year + 1)]])
        return cursor.fetchone()[0]


def test_a_partition_is_attached_with_the_tables_indexes(alice_client, org_a):
    series = SeriesFactory(organization=org_a, symbol="T", kind="trade", exchange="", bar_seconds=None)
    assert _post(alice_client, series, [{"ts": "1985-03-03T00:00:00Z", "price": 1, "size": 1,
                                         "trade_id": "a"}]).status_code == 201
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'watchlists_tick_p1985_03' ORDER BY 1")
        indexes = [row[0] for row in cursor.fetchall()]
    assert len(indexes) == 2 and any("UNIQUE" in i and "trade_id IS NOT NULL" in i for i in indexes), indexes
    # The unique index holds: the same trade id again stores nothing.
    assert _post(alice_client, series, [{"ts": "1985-03-03T00:00:00Z", "price": 1, "size": 1,
                                         "trade_id": "a"}]).json()["stored"] == 0


@pytest.mark.parametrize("body", [
    [{"ts": "2024-01-02T10:00:00Z", "value": True}],
    [{"ts": "2024-01-02T10:00:00Z", "value": 1}, {"ts": "2024-01-02T10:01:00Z", "value": False}],
    [{"ts": True, "value": 1}],
])
def test_a_boolean_is_not_a_number(alice_client, sensor, body):
    row = next(i for i, r in enumerate(body, 1) if any(type(v) is bool for v in r.values()))
    _refused(_post(alice_client, sensor, body), "invalid_batch", row=row)
    assert count_rows("watchlists_metric", sensor.pk) == 0


@given(columns=st.integers(1, 5000), quoted=st.booleans())
@PROPERTY
def test_a_csv_with_more_columns_than_the_limit_is_refused_from_its_header(alice_client, sensor, columns, quoted):
    names = [f'"c,{i}"' if quoted else f"c{i}" for i in range(columns - 2)]
    header = ",".join(["ts", "value", *names][:columns])
    response = _post(alice_client, sensor, header + "\n", "text/csv")
    if columns > 64:
        error = _refused(response, "too_many_columns")
        assert error["details"]["limit_columns"] == 64
    else:
        assert response.status_code in (201, 400), response.content[:300]
        assert response.json().get("error", {}).get("code") != "too_many_columns"


def test_a_header_only_csv_of_300000_columns_is_refused_quickly(alice_client, sensor):
    import time

    body = "ts,value," + ",".join(f"c{i}" for i in range(300_000)) + "\n"
    started = time.process_time()
    _refused(_post(alice_client, sensor, body, "text/csv"), "too_many_columns")
    assert time.process_time() - started < 1


def test_import_csv_refuses_a_file_with_too_many_columns(tmp_path, org_a):
    path = tmp_path / "wide.csv"
    path.write_text("ts,value," + ",".join(f"c{i}" for i in range(100_000)) + "\n2024-01-02T10:00:00Z,1\n")
    with pytest.raises(CommandError, match="at most 64 columns"):
        call_command("import_csv", "--org", str(org_a.pk), "--symbol", "W", "--file", str(path))


def test_creating_a_series_with_a_csv_body_is_a_clear_4xx(alice_client):
    body = "symbol,kind," + ",".join(f"c{i}" for i in range(300_000)) + "\n"
    response = alice_client.post("/api/v1/series/", data=body, content_type="text/csv")
    assert 400 <= response.status_code < 500 and response.json()["error"]["code"], response.content[:300]


@pytest.mark.parametrize("query", ["end=0001-01-01T00:00:00Z", "start=0001-01-01T00:00:00Z",
                                   "end=9999-12-31T23:59:59Z", "start=1600-01-01T00:00:00Z&end=2024-01-01T00:00:00Z"])
@pytest.mark.parametrize("path", ["points", "features"])
def test_a_read_outside_the_stores_times_is_a_400(alice_client, sensor, query, path):
    response = alice_client.get(f"/api/v1/series/{sensor.pk}/{path}/?{query}")
    error = _refused(response, "invalid")
    assert set(error["details"]) <= {"start", "end"} and error["details"], error


@pytest.mark.parametrize("field", ["points", "features"])
def test_graphql_reads_outside_the_stores_times_are_refused(alice, sensor, field):
    body = session_client(alice)(
        f'query($id: ID!) {{ {field}(seriesId: $id, end: "0001-01-01T00:00:00Z") {{ count }} }}', id=str(sensor.pk))
    assert body["data"] is None and body["errors"], body
    assert body["errors"][0]["extensions"]["code"] == "invalid", body


def test_reads_at_the_edges_of_the_stores_times_answer(alice_client, sensor):
    for query in (f"start={_iso(STORE_MIN)}&end={_iso(STORE_MAX)}", f"end={_iso(STORE_MIN)}"):
        assert alice_client.get(f"/api/v1/series/{sensor.pk}/points/?{query}").status_code == 200
