"""Polygon against the fake servers: paging, 429, malformed pages, and a WebSocket that drops."""

import asyncio
import json
from datetime import date

import pandas as pd
import pytest
from asgiref.sync import async_to_sync

from watchlists.providers import services
from watchlists.providers.base import AuthFailed, MalformedPayload
from watchlists.providers.polygon import Polygon, PolygonStream

from .conftest import bar_times
from .fakes import FakePolygon, FakePolygonSocket, am_event, session_minutes

pytestmark = pytest.mark.django_db
DAY = date(2024, 3, 12)


def pg(sleeps, **kw):
    return Polygon(api_key=FakePolygon.API_KEY, sleep=sleeps, **kw)


def test_history_reads_every_next_url_page(fake_polygon, actor, pg_link, sleeps):
    fake_polygon.page_size = 100
    fake_polygon.add_minutes("AAPL", session_minutes(DAY))
    result = services.import_range(actor=actor, link=pg_link, start=DAY, end=DAY, provider=pg(sleeps))
    # Polygon serves 04:00-20:00 ET (960 bars, 10 pages of 100); the regular session's 390 are stored.
    assert result.stored == 390 and len(bar_times(pg_link.series_id)) == 390
    assert len(fake_polygon.requests) == 10
    assert all(q["apiKey"] == FakePolygon.API_KEY for _, q in fake_polygon.requests)  # re-added to next_url
    assert bar_times(pg_link.series_id)[0] == pd.Timestamp("2024-03-12T13:30:00Z").value // 1000


def test_a_429_waits_the_advertised_retry_after(fake_polygon, actor, pg_link, sleeps):
    fake_polygon.add_minutes("AAPL", session_minutes(DAY))
    fake_polygon.scripted = [(429, {"Retry-After": "7"}, json.dumps({"status": "ERROR", "error": "too many"}))]
    result = services.import_range(actor=actor, link=pg_link, start=DAY, end=DAY, provider=pg(sleeps))
    assert sleeps == [7.0]
    assert result.stored == 390 and len(bar_times(pg_link.series_id)) == 390


def test_a_malformed_page_stores_nothing_of_the_range(fake_polygon, actor, pg_link, sleeps):
    fake_polygon.page_size = 100
    fake_polygon.add_minutes("AAPL", session_minutes(DAY))
    fake_polygon.malformed_pages = {2}
    with pytest.raises(MalformedPayload):
        services.import_range(actor=actor, link=pg_link, start=DAY, end=DAY, provider=pg(sleeps))
    assert bar_times(pg_link.series_id) == []  # pages 0 and 1 were fine, and still not stored
    pg_link.refresh_from_db()
    assert "lack t/o/h/l/c/v" in pg_link.last_error


def test_a_bad_key_is_permanent(fake_polygon, actor, pg_link, sleeps):
    with pytest.raises(AuthFailed):
        services.import_range(actor=actor, link=pg_link, start=DAY, end=DAY,
                              provider=Polygon(api_key="wrong", sleep=sleeps))
    assert sleeps == [] and len(fake_polygon.requests) == 1
    pg_link.refresh_from_db()
    assert "Unknown API Key" in pg_link.last_error and "wrong" not in pg_link.last_error


def test_backoff_grows_exponentially_with_jitter_and_caps():
    stream = PolygonStream(url="ws://127.0.0.1:1", api_key="k", channels="AM.X", on_events=None,
                           base_delay=1, max_delay=30, rng=lambda: 1.0)
    assert [stream.backoff(a) for a in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    low = PolygonStream(url="", api_key="k", channels="", on_events=None, rng=lambda: 0.0)
    assert low.backoff(3) == 4.0  # jitter scales into [0.5, 1) of the step


def test_a_websocket_drop_reconnects_and_the_gap_is_backfilled(settings, fake_polygon, actor, pg_link):
    """Minutes 0-4 arrive live, the socket dies, minutes 5-9 pass while disconnected, the stream
    comes back at minute 10 (re-sending minute 10 twice). REST fills 5-9; nothing is missing or doubled."""
    minutes = session_minutes(DAY)[:16]
    ms = [int(t.value // 1_000_000) for t in minutes]
    fake_polygon.add_minutes("AAPL", minutes)  # what Polygon's history knows afterwards

    def script(connection):
        if connection == 1:
            return [[am_event("AAPL", ms[i], i)] for i in range(5)], True
        return [[am_event("AAPL", ms[i], i) for i in (10, 10, 11)], [am_event("AAPL", ms[i], i) for i in range(12, 15)]], False

    socket = FakePolygonSocket(script).start()
    settings.POLYGON_WS_URL = socket.url
    delays = []
    try:
        async def main():
            stop = asyncio.Event()
            seen = []

            async def no_wait(seconds):
                delays.append(seconds)

            client = Polygon(api_key=FakePolygon.API_KEY, sleep=lambda s: None)
            original = services.store_events

            def watching(**kw):
                seen.extend(e["s"] for e in kw["events"])
                if ms[14] in seen:
                    stop.set()
                return original(**kw)

            services.store_events = watching
            try:
                await asyncio.wait_for(services.run_stream(
                    organization_id=actor.organization_id, stop=stop, client=client,
                    now=lambda: minutes[15].to_pydatetime(), sleep=no_wait, rng=lambda: 0.5), 20)
            finally:
                services.store_events = original

        async_to_sync(main)()
    finally:
        socket.stop()

    assert socket.connections == 2 and len(delays) == 1  # one drop, one backoff, one reconnect
    auths = [m for m in socket.received if m["action"] == "auth"]
    subs = [m for m in socket.received if m["action"] == "subscribe"]
    assert len(auths) == 2 and subs[-1]["params"] == "AM.AAPL"
    times = bar_times(pg_link.series_id)
    expected = [t.value // 1000 for t in minutes[:15]]
    assert times == expected  # every minute once: none missing, none doubled
    # The REST call after the reconnect asked for exactly the minutes after the last stored one.
    (path, _), = [r for r in fake_polygon.requests if "/range/" in r[0]]
    assert path.endswith(f"/{ms[5]}/{ms[15] - 1}")


def test_an_auth_failure_on_the_socket_stops_without_retrying(settings, actor, pg_link):
    socket = FakePolygonSocket(lambda n: ([], False)).start()
    settings.POLYGON_WS_URL = socket.url
    try:
        async def main():
            await asyncio.wait_for(services.run_stream(organization_id=actor.organization_id, stop=asyncio.Event(),
                                                       client=Polygon(api_key="wrong")), 10)

        with pytest.raises(AuthFailed):
            async_to_sync(main)()
    finally:
        socket.stop()
    assert socket.connections == 1


def test_malformed_stream_messages_are_reported_and_dropped(actor, pg_link):
    provider = Polygon(api_key="k")
    links = {"AAPL": pg_link}
    bad = [{"ev": "AM", "sym": "AAPL", "s": 1710250200000, "o": 1, "h": 1, "l": 1, "v": 1}]  # no close
    assert services.store_events(organization_id=actor.organization_id, links=links, provider=provider, events=bad) == 0
    pg_link.refresh_from_db()
    assert pg_link.last_error.startswith("Live stream:") and bar_times(pg_link.series_id) == []


def test_trade_events_become_ticks_deduplicated_by_trade_id(actor, org_a):
    from tests.factories import SeriesFactory

    spy = SeriesFactory(organization=org_a, symbol="SPY", kind="trade", exchange="XNYS", bar_seconds=None)
    link = services.connect_series(actor=actor, series=spy, provider="polygon")
    trade = {"ev": "T", "sym": "SPY", "x": 4, "i": "52983525029461", "z": 3, "p": 512.31, "s": 100, "c": [12, 37],
             "t": 1710250200123, "q": 1}
    events = [trade, dict(trade), {**trade, "i": "52983525029462", "p": 512.32}]
    provider = Polygon(api_key="k")
    services.store_events(organization_id=actor.organization_id, links={"SPY": link}, provider=provider, events=events)
    services.store_events(organization_id=actor.organization_id, links={"SPY": link}, provider=provider, events=events)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT trade_id, price FROM watchlists_tick WHERE series_id = %s ORDER BY trade_id", [spy.pk])
        assert cursor.fetchall() == [("4:52983525029461", 512.31), ("4:52983525029462", 512.32)]
