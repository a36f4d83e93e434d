"""Ingest over REST: formats, validation, idempotency, limits, permissions."""

import pytest

from tests.watchlists.conftest import count_rows
from watchlists.signals import batch_stored

pytestmark = pytest.mark.django_db

TICKS = [
    {"ts": "2013-10-07T09:30:00.001-04:00", "price": 168.10, "size": 100},
    {"ts": "2013-10-07T09:30:00.001-04:00", "price": 168.10, "size": 100},  # an identical print: both are real
    {"ts": "2013-10-07T09:30:00.250-04:00", "price": 168.12, "size": 300},
]


def test_json_ticks_are_stored_including_identical_prints(alice_client, spy):
    r = alice_client.post(f"/api/v1/series/{spy.pk}/points/", TICKS, format="json")
    assert r.status_code == 201, r.content
    assert r.json()["stored"] == 3 and r.json()["first_ts"].startswith("2013-10-07T13:30:00.001")
    assert count_rows("watchlists_tick", spy.pk) == 3


def test_idempotency_key_makes_a_resent_batch_store_nothing(alice_client, spy):
    url = f"/api/v1/series/{spy.pk}/points/"
    first = alice_client.post(url, TICKS, format="json", HTTP_IDEMPOTENCY_KEY="batch-1")
    again = alice_client.post(url, TICKS, format="json", HTTP_IDEMPOTENCY_KEY="batch-1")
    assert first.status_code == 201 and again.status_code == 200 and again.json()["duplicate"] is True
    assert count_rows("watchlists_tick", spy.pk) == 3


def test_ticks_with_trade_ids_are_deduplicated_by_id(alice_client, spy):
    url = f"/api/v1/series/{spy.pk}/points/"
    rows = [dict(t, trade_id=str(i)) for i, t in enumerate(TICKS)]
    alice_client.post(url, rows, format="json")
    alice_client.post(url, rows, format="json")
    assert count_rows("watchlists_tick", spy.pk) == 3


def test_alpha_vantage_csv_is_accepted_as_is_with_exchange_local_times(alice_client, bars):
    csv = ("timestamp,open,high,low,close,volume\n"
           "2024-03-08 09:31:00,190.1,190.5,190.0,190.4,1200\n"
           "2024-03-11 09:30:00,191.0,191.2,190.9,191.1,900\n")  # after the DST change
    r = alice_client.post(f"/api/v1/series/{bars.pk}/points/", csv, content_type="text/csv")
    assert r.status_code == 201, r.content
    assert r.json()["first_ts"] == "2024-03-08T14:31:00+00:00"  # EST: UTC-5
    assert r.json()["last_ts"] == "2024-03-11T13:30:00+00:00"  # EDT: UTC-4


def test_bars_are_idempotent_on_time_and_replaced_by_corrections(alice_client, bars):
    url = f"/api/v1/series/{bars.pk}/points/"
    bar = {"ts": "2024-03-08T14:31:00Z", "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 10}
    alice_client.post(url, [bar], format="json")
    alice_client.post(url, [dict(bar, close=1.9)], format="json")
    assert count_rows("watchlists_bar", bars.pk) == 1
    r = alice_client.get(url, {"start": "2024-03-08T00:00:00Z", "end": "2024-03-09T00:00:00Z"})
    assert r.json()["points"][0][4] == 1.9


def test_a_bad_row_rejects_the_whole_batch_and_names_it(alice_client, bars):
    rows = [
        {"ts": "2024-03-08T14:31:00Z", "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 10},
        {"ts": "not a time", "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 10},
        {"ts": "2024-03-08T14:33:00Z", "open": 1, "high": 0.4, "low": 0.5, "close": 1.5, "volume": -3},
        {"ts": "2024-03-08T14:34:00Z", "open": "NaN", "high": 2, "low": 0.5, "close": True, "volume": 1},
    ]
    r = alice_client.post(f"/api/v1/series/{bars.pk}/points/", rows, format="json")
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["code"] == "invalid_batch"
    found = {(e["row"], e["column"], e["reason"]) for e in err["details"]["errors"]}
    assert (2, "ts", "unparsable or ambiguous time") in found
    assert (3, "high", "high is below low") in found
    assert (3, "volume", "volume must not be negative") in found
    assert (4, "open", "not a number") in found and (4, "close", "not a number") in found
    assert count_rows("watchlists_bar", bars.pk) == 0


@pytest.mark.parametrize("body, reason", [
    ("timestamp,price\n2024-01-01T00:00:00Z,1\n", "missing column 'open'"),
    ("ts,open,high,low,close,volume,colour\n2024-01-01T00:00:00Z,1,1,1,1,1,red\n", "unknown column 'colour'"),
    ("open,high,low,close,volume\n1,1,1,1,1\n", "missing time column"),
    ('"unterminated\n', "EOF inside string"),
])
def test_wrong_columns_are_clear_errors(alice_client, bars, body, reason):
    r = alice_client.post(f"/api/v1/series/{bars.pk}/points/", body, content_type="text/csv")
    assert r.status_code == 400
    assert any(reason in e["reason"] for e in r.json()["error"]["details"]["errors"]), r.json()


def test_infinite_and_blank_values_are_rejected(alice_client, sensor):
    csv = "ts,value\n2024-01-01T00:00:00Z,inf\n2024-01-01T00:01:00Z,\n2024-01-01T00:02:00Z,3\n"
    r = alice_client.post(f"/api/v1/series/{sensor.pk}/points/", csv, content_type="text/csv")
    reasons = {(e["row"], e["reason"]) for e in r.json()["error"]["details"]["errors"]}
    assert reasons == {(1, "not finite"), (2, "missing value")}


def test_oversized_batch_is_413_with_the_limit(alice_client, sensor, settings):
    settings.INGEST_MAX_BATCH_ROWS = 10
    rows = [{"ts": f"2024-01-01T00:{i:02d}:00Z", "value": i} for i in range(11)]
    r = alice_client.post(f"/api/v1/series/{sensor.pk}/points/", rows, format="json")
    assert r.status_code == 413 and "limit is 10" in r.json()["error"]["message"]
    assert count_rows("watchlists_metric", sensor.pk) == 0


def test_multi_series_ingest_is_atomic(alice_client, spy, sensor):
    good = {"SPY": TICKS, "pump-7.temp": [{"ts": "2024-01-01T00:00:00Z", "value": 1}, {"ts": "x", "value": 2}]}
    r = alice_client.post("/api/v1/ingest/", {"points": good}, format="json")
    assert r.status_code == 400 and r.json()["error"]["details"]["symbol"] == "pump-7.temp"
    assert count_rows("watchlists_tick", spy.pk) == 0
    good["pump-7.temp"] = good["pump-7.temp"][:1]
    r = alice_client.post("/api/v1/ingest/", {"points": good}, format="json")
    assert r.status_code == 201 and [x["stored"] for x in r.json()] == [3, 1]


def test_ingest_cannot_reach_other_orgs_symbols(carol_client, spy):
    r = carol_client.post("/api/v1/ingest/", {"points": {"SPY": TICKS}}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_symbol"
    assert count_rows("watchlists_tick", spy.pk) == 0


def test_viewer_and_read_key_cannot_ingest_but_ingest_key_can(bob_client, key_client, spy):
    url = f"/api/v1/series/{spy.pk}/points/"
    assert bob_client.post(url, TICKS, format="json").status_code == 403
    assert key_client("read").post(url, TICKS, format="json").status_code == 403
    assert key_client("ingest").post(url, TICKS, format="json").status_code == 201
    assert key_client("ingest").post("/api/v1/series/", {"symbol": "X"}, format="json").status_code == 403


def test_detection_hook_is_called_after_commit_with_the_range(alice_client, spy, django_capture_on_commit_callbacks):
    calls = []

    def receiver(sender, **kwargs):
        calls.append(kwargs)

    batch_stored.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            alice_client.post(f"/api/v1/series/{spy.pk}/points/", TICKS, format="json")
        assert calls == []  # nothing before commit
        for callback in callbacks:
            callback()
    finally:
        batch_stored.disconnect(receiver)
    assert len(calls) == 1
    ((series_id, (start_us, end_us)),) = calls[0]["spans"].items()
    assert series_id == spy.pk and end_us - start_us == 249_000


def test_series_crud_and_validation(alice_client):
    r = alice_client.post("/api/v1/series/", {"symbol": "AAPL", "kind": "bar", "exchange": "xnas"}, format="json")
    assert r.status_code == 201 and r.json()["timezone"] == "America/New_York" and r.json()["exchange"] == "XNAS"
    dup = alice_client.post("/api/v1/series/", {"symbol": "AAPL"}, format="json")
    assert dup.status_code == 409
    bad = alice_client.post("/api/v1/series/", {"symbol": "Z", "exchange": "MOON"}, format="json")
    assert bad.status_code == 400 and "exchange" in bad.json()["error"]["details"]


def test_watchlist_only_takes_own_series(alice_client, carol, spy):
    from tests.factories import SeriesFactory

    foreign = SeriesFactory(organization=carol.memberships.first().organization)
    r = alice_client.post("/api/v1/watchlists/", {"name": "Core", "series": [spy.pk, foreign.pk]}, format="json")
    assert r.status_code == 400 and f"No series with id {foreign.pk}." in r.json()["error"]["details"]["series"]
    r = alice_client.post("/api/v1/watchlists/", {"name": "Core", "series": [spy.pk]}, format="json")
    assert r.status_code == 201 and r.json()["series"] == [spy.pk]


def test_json_bodies_orjson_refuses_still_get_drfs_answers(alice_client, spy):
    url = f"/api/v1/series/{spy.pk}/points/"
    bad = alice_client.post(url, '[{"ts": "2013-10-07T13:30:00Z", "price": NaN, "size": 1}]',
                            content_type="application/json")
    assert bad.status_code == 400 and "JSON parse error" in bad.content.decode()
    latin = '[{"ts": "2013-10-07T13:30:00Z", "price": 1, "size": 1, "exchange": "Z\u00fcrich"}]'
    ok = alice_client.post(url, latin.encode("latin-1"), content_type="application/json; charset=latin-1")
    assert ok.status_code == 201, ok.content


def test_a_committed_batch_is_not_failed_by_a_redis_outage_and_the_sweep_finds_it(
        alice_client, spy, settings, caplog, django_capture_on_commit_callbacks):
    """After commit, queueing detection and rollups needs Redis. If it is down, the request must
    still answer for what it stored (a 500 invites a resend, and resent ticks without an
    Idempotency-Key are stored twice); detection is then recovered by the sweep."""
    from detection import pipeline
    from detection.models import Rule

    Rule.objects.create(organization=spy.organization, name="any", metrics="price > 0", series=spy, enabled=True)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        r = alice_client.post(f"/api/v1/series/{spy.pk}/points/", TICKS, format="json")
    assert r.status_code == 201
    # Nothing listens on port 1: every Redis command of the hooks fails to connect.
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": "redis://127.0.0.1:1/0"}}
    for callback in callbacks:
        callback()  # raised ConnectionError before
    assert count_rows("watchlists_tick", spy.pk) == 3
    assert "failed after a committed batch" in caplog.text and "rollups not queued" in caplog.text
    assert (spy.pk, spy.organization_id) in pipeline.stale_series()
