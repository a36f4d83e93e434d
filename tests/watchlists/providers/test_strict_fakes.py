"""The provider code against fakes as strict as the providers: extended hours, Alpha Vantage's
current limit texts and `datatype`, Polygon's plan limits, delayed plans, header keys, sort and
limit, one socket per key and fractional sizes."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from datetime import date

import pandas as pd
import pytest
from asgiref.sync import async_to_sync

from tests.factories import SeriesFactory
from watchlists.providers import services
from watchlists.providers.alphavantage import PER_SECOND_WAIT, AlphaVantage
from watchlists.providers.base import ProviderError
from watchlists.providers.polygon import Polygon

from .conftest import bar_times
from .fakes import (
    AV_BURST,
    AV_DAILY,
    FakeAlphaVantage,
    FakePolygon,
    FakePolygonSocket,
    is_extended,
    session_minutes,
)

DAY = date(2024, 3, 12)


def _av_get(fake, **params) -> tuple[str, bytes]:
    query = "&".join(f"{k}={v}" for k, v in {"function": "TIME_SERIES_INTRADAY", "symbol": "IBM", "interval": "1min",
                                             "apikey": FakeAlphaVantage.API_KEY, **params}.items())
    with urllib.request.urlopen(f"{fake.url}/query?{query}", timeout=5) as resp:
        return resp.headers["Content-Type"], resp.read()


def test_the_alpha_vantage_fake_answers_json_by_default_and_extended_hours_unless_told(fake_av):
    fake_av.minutes["IBM"] = session_minutes(DAY)
    content_type, body = _av_get(fake_av)
    assert content_type == "application/json"
    series = json.loads(body)["Time Series (1min)"]
    assert len(series) == 960 and "2024-03-12 04:00:00" in series and "2024-03-12 19:59:00" in series
    content_type, body = _av_get(fake_av, datatype="csv", extended_hours="false")
    assert content_type == "text/csv" and body.count(b"\n") == 391  # header + the regular session


def test_the_burst_note_is_a_short_wait_not_the_daily_limit(fake_av, actor, av_link):
    """Alpha Vantage's current per-second note also names "25 requests per day": it used to be
    read as the daily limit (a wait until midnight)."""
    fake_av.minutes["IBM"] = session_minutes(DAY)
    fake_av.scripted = [(200, {"Content-Type": "application/json"}, json.dumps({"Information": AV_BURST}))]
    sleeps = []
    result = services.import_range(actor=actor, link=av_link, start=DAY, end=DAY,
                                   provider=AlphaVantage(api_key=FakeAlphaVantage.API_KEY, sleep=sleeps.append))
    assert sleeps == [PER_SECOND_WAIT] and result.stored == 390


def test_the_daily_limit_text_waits_for_the_next_day(fake_av, actor, av_link):
    fake_av.scripted = [(200, {"Content-Type": "application/json"}, json.dumps({"Information": AV_DAILY}))]
    with pytest.raises(ProviderError, match="daily limit"):
        AlphaVantage(api_key=FakeAlphaVantage.API_KEY, sleep=lambda s: None).test_connection()


def test_off_session_bars_are_not_stored_and_the_session_is_whole(fake_polygon, actor, pg_link):
    fake_polygon.add_minutes("AAPL", session_minutes(DAY))  # with 04:00-09:30 and 16:00-20:00 ET
    served = [pd.Timestamp(t, unit="ms", tz="UTC") for t in fake_polygon.bars["AAPL"]]
    assert sum(map(is_extended, served)) == 570
    result = services.import_range(actor=actor, link=pg_link, start=DAY, end=DAY,
                                   provider=Polygon(api_key=FakePolygon.API_KEY, sleep=lambda s: None))
    times = bar_times(pg_link.series_id)
    assert result.received == 960 and result.stored == 390 and len(times) == 390
    assert not any(is_extended(pd.Timestamp(t, unit="us", tz="UTC")) for t in times)


def test_a_plan_limit_says_the_plan_does_not_include_it_not_that_the_key_was_refused(fake_polygon, actor, pg_link):
    fake_polygon.add_minutes("AAPL", session_minutes(DAY))
    fake_polygon.history_days = 0  # this plan reaches no further back than the newest bar
    with pytest.raises(ProviderError) as refused:
        services.import_range(actor=actor, link=pg_link, start=DAY, end=DAY,
                              provider=Polygon(api_key=FakePolygon.API_KEY, sleep=lambda s: None))
    assert refused.value.permanent and "your plan does not include this" in str(refused.value)
    pg_link.refresh_from_db()
    assert "plan does not include" in pg_link.last_error and "refused the key" not in pg_link.last_error


def test_a_delayed_plan_and_a_header_key_are_served_like_polygon(fake_polygon, actor, pg_link):
    fake_polygon.add_minutes("AAPL", session_minutes(DAY))
    fake_polygon.delayed = True
    result = services.import_range(actor=actor, link=pg_link, start=DAY, end=DAY,
                                   provider=Polygon(api_key=FakePolygon.API_KEY, sleep=lambda s: None))
    assert result.stored == 390
    url = f"{fake_polygon.url}/v2/aggs/ticker/AAPL/range/1/minute/2024-03-12/2024-03-12?sort=desc&limit=3"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {FakePolygon.API_KEY}"})
    body = json.loads(urllib.request.urlopen(request, timeout=5).read())
    assert body["status"] == "DELAYED" and len(body["results"]) == 3 and "next_url" in body
    assert body["results"][0]["t"] > body["results"][1]["t"]  # sort=desc


def test_a_second_socket_on_the_key_stops_on_max_connections_and_says_why(settings, actor, pg_link):
    socket = FakePolygonSocket(lambda n: ([], False)).start()
    settings.POLYGON_WS_URL = socket.url

    async def main():
        stop = asyncio.Event()
        first = asyncio.ensure_future(services.run_stream(organization_id=actor.organization_id, stop=stop,
                                                          client=Polygon(api_key=FakePolygon.API_KEY)))
        for _ in range(100):
            if socket.authenticated:
                break
            await asyncio.sleep(0.05)
        try:
            with pytest.raises(ProviderError, match="another connection already uses this key") as refused:
                await asyncio.wait_for(services.run_stream(organization_id=actor.organization_id, stop=asyncio.Event(),
                                                           client=Polygon(api_key=FakePolygon.API_KEY)), 10)
            return refused.value
        finally:
            stop.set()
            await asyncio.wait_for(first, 10)

    try:
        error = async_to_sync(main)()
    finally:
        socket.stop()
    assert error.permanent and socket.connections == 2  # the second stream did not reconnect


def test_fractional_trade_sizes_from_the_stream_are_stored(actor, org_a):
    spy = SeriesFactory(organization=org_a, symbol="SPY", kind="trade", exchange="XNYS", bar_seconds=None)
    link = services.connect_series(actor=actor, series=spy, provider="polygon")
    trade = {"ev": "T", "sym": "SPY", "x": 4, "i": "1", "z": 3, "p": 512.31, "s": 0.25, "c": [12, 37],
             "t": 1710250200123, "q": 1}
    stored = services.store_events(organization_id=actor.organization_id, links={"SPY": link},
                                   provider=Polygon(api_key="k"), events=[trade])
    assert stored == 1
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT size FROM watchlists_tick WHERE series_id = %s", [spy.pk])
        assert cursor.fetchall() == [(0.25,)]
