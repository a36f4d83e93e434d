"""Polygon tick history (/v3/trades with next_url) and the tick stream's gap after a reconnect."""

import asyncio
from datetime import date

import pandas as pd
import pytest
from asgiref.sync import async_to_sync
from django.db import connection

from tests.factories import SeriesFactory
from watchlists.providers import services
from watchlists.providers.base import MalformedPayload
from watchlists.providers.polygon import Polygon

from .fakes import FakePolygon, FakePolygonSocket

pytestmark = pytest.mark.django_db
OPEN_NS = pd.Timestamp("2024-03-12T13:30:00Z").value  # 09:30 EDT


def ticks(series_id):
    with connection.cursor() as cursor:
        cursor.execute("SELECT (extract(epoch from ts) * 1000)::bigint, trade_id FROM watchlists_tick "
                       "WHERE series_id = %s ORDER BY ts, trade_id", [series_id])
        return cursor.fetchall()


@pytest.fixture
def spy_link(actor, org_a):
    services.save_credential(actor=actor, provider="polygon", secret=FakePolygon.API_KEY)
    spy = SeriesFactory(organization=org_a, symbol="SPY", kind="trade", exchange="XNYS", bar_seconds=None)
    return services.connect_series(actor=actor, series=spy, provider="polygon")


def _trades(fake, n, every_ms=250):
    for i in range(n):
        fake.add_trade("SPY", OPEN_NS + i * every_ms * 1_000_000 + 123, 512 + i / 100, 100 + i, 4, str(1000 + i))


def test_tick_history_reads_every_page_in_the_exchange_day(fake_polygon, actor, spy_link, sleeps):
    fake_polygon.page_size = 40
    _trades(fake_polygon, 100)
    fake_polygon.add_trade("SPY", pd.Timestamp("2024-03-13T04:30:00Z").value, 1, 1, 4, "next-day")  # 00:30 EDT
    day = date(2024, 3, 12)
    result = services.import_range(actor=actor, link=spy_link, start=day, end=day,
                                   provider=Polygon(api_key=FakePolygon.API_KEY, sleep=sleeps))
    assert result.stored == 100
    stored = ticks(spy_link.series_id)
    assert stored[0] == (OPEN_NS // 1_000_000, "4:1000") and len(stored) == 100
    trade_calls = [q for p, q in fake_polygon.requests if p.startswith("/v3/trades/SPY")]
    assert len(trade_calls) == 3 and all(q["apiKey"] == FakePolygon.API_KEY for q in trade_calls)
    first = trade_calls[0]
    # The exchange-local day 2024-03-12 in ns: [04:00Z, next 04:00Z) during EDT.
    assert int(first["timestamp.gte"]) == pd.Timestamp("2024-03-12T04:00:00Z").value
    assert int(first["timestamp.lt"]) == pd.Timestamp("2024-03-13T04:00:00Z").value
    again = services.import_range(actor=actor, link=spy_link, start=day, end=day,
                                  provider=Polygon(api_key=FakePolygon.API_KEY, sleep=sleeps))
    assert again.received == 100 and len(ticks(spy_link.series_id)) == 100  # stored once


def test_a_malformed_trades_page_stores_nothing(fake_polygon, actor, spy_link, sleeps):
    fake_polygon.page_size = 40
    _trades(fake_polygon, 100)
    fake_polygon.malformed_pages = {2}
    day = date(2024, 3, 12)
    with pytest.raises(MalformedPayload):
        services.import_range(actor=actor, link=spy_link, start=day, end=day,
                              provider=Polygon(api_key=FakePolygon.API_KEY, sleep=sleeps))
    assert ticks(spy_link.series_id) == []
    spy_link.refresh_from_db()
    assert "Polygon trades: 1 result(s) lack" in spy_link.last_error


def test_a_tick_stream_drop_is_filled_through_rest_without_doubles(settings, fake_polygon, actor, spy_link):
    """Trades 0-4 arrive live, the socket dies, 5-9 happen meanwhile, the stream resumes at 8 (overlap)."""
    _trades(fake_polygon, 13)
    history = sorted(fake_polygon.trades["SPY"], key=lambda t: t["sip_timestamp"])

    def event(i):
        t = history[i]
        return {"ev": "T", "sym": "SPY", "x": t["exchange"], "i": t["id"], "z": 3, "p": t["price"], "s": t["size"],
                "c": t["conditions"], "t": t["sip_timestamp"] // 1_000_000, "q": t["sequence_number"]}

    def script(number):
        if number == 1:
            return [[event(i) for i in range(5)]], True
        return [[event(i) for i in range(8, 13)]], False

    socket = FakePolygonSocket(script).start()
    settings.POLYGON_WS_URL = socket.url
    try:
        async def main():
            stop = asyncio.Event()
            original = services.store_events

            def watching(**kw):
                stored = original(**kw)
                if any(e["i"] == history[12]["id"] for e in kw["events"]):
                    stop.set()
                return stored

            services.store_events = watching
            try:
                await asyncio.wait_for(services.run_stream(
                    organization_id=actor.organization_id, stop=stop,
                    client=Polygon(api_key=FakePolygon.API_KEY, sleep=lambda s: None),
                    now=lambda: pd.Timestamp(history[10]["sip_timestamp"] // 1000 * 1000, unit="ns", tz="UTC").to_pydatetime(),
                    sleep=lambda s: asyncio.sleep(0), rng=lambda: 0.5), 20)
            finally:
                services.store_events = original

        async_to_sync(main)()
    finally:
        socket.stop()
    assert socket.connections == 2
    assert [tid for _, tid in ticks(spy_link.series_id)] == [f"4:{1000 + i}" for i in range(13)]
