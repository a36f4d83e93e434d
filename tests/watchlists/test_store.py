"""The store: rollups with late data, features without lookahead, time-paginated reads."""

import numpy as np
import pytest

from tests.watchlists.conftest import count_rows
from watchlists.store import reader, rollups
from watchlists.store.rollups import refresh_rollups
from watchlists.store.timeconv import US

pytestmark = pytest.mark.django_db
FAR = 4_102_444_800 * US  # 2100-01-01


@pytest.fixture
def post(alice_client, django_capture_on_commit_callbacks):
    """POSTs points and runs the after-commit work (rollups, features) as production would."""

    def send(series, rows):
        with django_capture_on_commit_callbacks(execute=True):
            r = alice_client.post(f"/api/v1/series/{series.pk}/points/", rows, format="json")
        assert r.status_code in (200, 201), r.content
        return r.json()

    return send


def _rollup(series, resolution, **query):
    from rest_framework.test import APIClient

    client = APIClient()
    client.force_login(series.organization.memberships.first().user)
    params = {"resolution": resolution, "start": "2013-10-07T00:00:00Z", "end": "2013-10-08T00:00:00Z", **query}
    return client.get(f"/api/v1/series/{series.pk}/points/", params).json()


def test_out_of_order_and_late_ticks_update_rollups(post, spy, alice):
    post(spy, [{"ts": "2013-10-07T14:00:30Z", "price": 10, "size": 1},
               {"ts": "2013-10-07T14:00:10Z", "price": 12, "size": 3}])  # out of order within a batch
    body = _rollup(spy, "1m")
    assert body["columns"] == ["ts", "open", "high", "low", "close", "volume", "trade_count", "vwap"]
    assert body["points"] == [["2013-10-07T14:00:00.000Z", 12, 12, 10, 10, 4, 2, 11.5]]
    # A late tick, earlier than everything, arrives in its own batch.
    post(spy, [{"ts": "2013-10-07T14:00:01Z", "price": 8, "size": 4}])
    assert _rollup(spy, "1m")["points"] == [["2013-10-07T14:00:00.000Z", 8, 12, 8, 10, 8, 3, 9.75]]
    assert _rollup(spy, "5m")["points"][0][1:6] == [8, 12, 8, 10, 8]
    assert _rollup(spy, "1h")["points"][0][0] == "2013-10-07T14:00:00.000Z"


@pytest.mark.parametrize("kind", ["trade", "metric"])
def test_coarse_rollups_built_from_minutes_equal_an_aggregation_of_every_raw_point(post, spy, sensor, kind):
    """5-minute and hourly buckets come from the minutes a batch touched; whatever the order and the
    batching (late points, batches across hour boundaries), they equal the raw points aggregated
    at once."""
    series = spy if kind == "trade" else sensor
    rng = np.random.default_rng(11)
    start_s = 1381152000  # 2013-10-07T13:20:00Z: the points span three hours
    seconds = np.sort(rng.choice(9000, size=600, replace=False)) + start_s
    rows = [{"ts": int(t) * 1000, "price": round(float(rng.uniform(90, 110)), 2), "size": int(rng.integers(0, 5)) * 100}
            if kind == "trade" else {"ts": int(t) * 1000, "value": round(float(rng.normal()), 3)} for t in seconds]
    order = rng.permutation(len(rows))  # batches of shuffled points: late and out-of-order data
    for chunk in np.array_split(order, 17):
        post(series, {"time_format": "epoch_ms", "points": [rows[i] for i in chunk]})

    raw = reader.read_raw(series.pk, kind, 0, FAR)
    assert len(raw["ts"]) == len(rows)
    for resolution in (60, 300, 3600):
        expected = rollups._aggregate(kind, raw, resolution)
        got = reader.read_rollup(series.pk, resolution, 0, FAR)
        np.testing.assert_array_equal(got["ts"], expected["ts"])
        for column in ("open", "high", "low", "close", "volume", "trade_count"):
            np.testing.assert_array_equal(got[column], expected[column], err_msg=f"{resolution}s {column}")
        np.testing.assert_allclose(got["vwap"], expected["vwap"], rtol=1e-12, err_msg=f"{resolution}s vwap")
    if kind == "trade":
        assert np.isnan(reader.read_rollup(series.pk, 60, 0, FAR)["vwap"]).any()  # minutes without volume occur


def _minute_bars(start_minute, n, close=lambda i: 100 + i):
    return [{"ts": f"2013-10-07T14:{start_minute + i:02d}:00Z", "open": close(i), "high": close(i) + 1,
             "low": close(i) - 1, "close": close(i), "volume": 1000 + i} for i in range(n)]


def test_features_have_no_lookahead(post, bars):
    post(bars, _minute_bars(0, 40))
    before = reader.read_features(bars.pk, 0, FAR)
    assert len(before["ts"]) == 40 and np.isfinite(before["vwap_5m"]).all()
    # Change every point after minute 20 wildly; features up to minute 20 must not move.
    post(bars, _minute_bars(21, 19, close=lambda i: 500 + 37 * i))
    after = reader.read_features(bars.pk, 0, FAR)
    cut = before["ts"] <= before["ts"][20]
    for column in ("vwap_5m", "vwap_15m", "realized_vol_15m", "volume_ratio", "price_momentum_5m"):
        np.testing.assert_array_equal(before[column][cut], after[column][cut], err_msg=column)
    assert not np.array_equal(before["vwap_5m"][~cut], after["vwap_5m"][~cut])


def test_refresh_is_idempotent(post, spy):
    post(spy, [{"ts": "2013-10-07T14:00:30Z", "price": 10, "size": 1}])
    n = count_rows("watchlists_rollup", spy.pk)
    t = 1381154430 * US
    refresh_rollups(spy, t, t)
    refresh_rollups(spy, t, t)
    assert count_rows("watchlists_rollup", spy.pk) == n == 3


def test_reads_are_paginated_by_time_with_a_stated_limit(post, bars, alice_client):
    post(bars, _minute_bars(0, 30))
    url = f"/api/v1/series/{bars.pk}/points/"
    page = alice_client.get(url, {"start": "2013-10-07T00:00:00Z", "end": "2013-10-08T00:00:00Z", "limit": 12}).json()
    seen = []
    while True:
        assert page["count"] <= 12 and page["limit"] == 12
        seen += [p[0] for p in page["points"]]
        if not page["next"]:
            break
        assert page["truncated"] is True
        page = alice_client.get(page["next"]).json()
    assert len(seen) == 30 and len(set(seen)) == 30 and seen == sorted(seen)


def test_limit_above_maximum_is_a_clear_error(alice_client, bars):
    r = alice_client.get(f"/api/v1/series/{bars.pk}/points/", {"limit": 10**6})
    assert r.status_code == 400 and "limit" in r.json()["error"]["details"]


def test_default_window_is_the_last_day_of_data(post, bars, alice_client):
    post(bars, _minute_bars(0, 5))
    body = alice_client.get(f"/api/v1/series/{bars.pk}/points/", {"time_format": "epoch_ms"}).json()
    assert body["count"] == 5 and body["points"][0][0] == 1381154400000


def test_metric_rollups_and_no_features(post, sensor):
    post(sensor, [{"ts": "2013-10-07T14:00:00Z", "value": 1}, {"ts": "2013-10-07T14:00:30Z", "value": 3}])
    assert _rollup(sensor, "1m")["points"][0][1:5] == [1, 3, 1, 3]
    assert count_rows("watchlists_feature", sensor.pk) == 0


def test_deleting_a_series_deletes_its_points(post, spy, alice_client):
    post(spy, [{"ts": "2013-10-07T14:00:30Z", "price": 10, "size": 1}])
    assert alice_client.delete(f"/api/v1/series/{spy.pk}/").status_code == 204
    assert count_rows("watchlists_tick", spy.pk) == 0 and count_rows("watchlists_rollup", spy.pk) == 0


def test_missing_values_read_as_null_in_json_and_in_the_browsable_api(post, sensor, alice_client):
    post(sensor, [{"ts": "2013-10-07T14:00:00Z", "value": 1}, {"ts": "2013-10-07T14:00:30Z", "value": 3}])
    body = _rollup(sensor, "1m", time_format="epoch_ms")
    # A metric has no volume, trade-weighted price or (here) a stated trade count of its own.
    assert body["points"] == [[1381154400000, 1, 3, 1, 3, None, 2, None]]
    url = f"/api/v1/series/{sensor.pk}/points/"
    page = alice_client.get(url, {"resolution": "1m", "start": "2013-10-07T00:00:00Z",
                                  "end": "2013-10-08T00:00:00Z"}, HTTP_ACCEPT="text/html")
    assert page.status_code == 200 and b"null" in page.content


def test_packed_reads_equal_a_plain_select_including_nulls_and_limits(post, sensor, spy):
    from django.db import connection

    post(sensor, [{"ts": f"2013-10-07T14:{m:02d}:{s:02d}Z", "value": m + s / 100} for m in (3, 1, 2) for s in (0, 30)])
    post(spy, [{"ts": "2013-10-07T14:00:30Z", "price": 10, "size": 1}])
    for series, resolution, limit in ((sensor, 60, None), (sensor, 60, 2), (spy, 60, None), (sensor, 3600, 0)):
        got = reader.read_rollup(series.pk, resolution, 0, FAR, limit)
        with connection.cursor() as cursor:
            cursor.execute("SELECT (extract(epoch from ts) * 1000000)::bigint, " + ", ".join(reader.ROLLUP_COLUMNS)
                           + " FROM watchlists_rollup WHERE series_id = %s AND resolution = %s ORDER BY ts"
                           + ("" if limit is None else f" LIMIT {limit}"), [series.pk, resolution])
            expected = reader._arrays(cursor.fetchall(), reader.ROLLUP_COLUMNS)
        assert got.keys() == expected.keys()
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    assert len(reader.read_rollup(sensor.pk, 60, 0, FAR)["ts"]) == 3
