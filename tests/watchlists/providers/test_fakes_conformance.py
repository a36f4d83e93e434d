"""The fakes' own conformance test: Polygon's official client (`massive`, formerly
polygon-api-client) pointed at the fakes must parse every kind of response they serve: paged
aggregates with extended hours, trades, the previous close, the delayed status, a plan limit, and
the socket's statuses and events (fractional sizes included). If the official client cannot read
a fake, the fake is wrong, and the project's tests against it prove nothing.
"""

from __future__ import annotations

import asyncio
from datetime import date

import pandas as pd
import pytest
from massive import RESTClient, WebSocketClient
from massive.exceptions import BadResponse
from massive.websocket.models import EquityAgg, EquityTrade

from .fakes import FakePolygon, FakePolygonSocket, am_event, session_minutes

DAY = date(2024, 3, 12)
OPEN_MS = int(pd.Timestamp("2024-03-12T13:30:00Z").value // 1_000_000)


@pytest.fixture
def polygon():
    fake = FakePolygon(page_size=200).start()
    fake.add_minutes("AAPL", session_minutes(DAY))
    for i in range(5):
        fake.add_trade("SPY", (OPEN_MS + i) * 1_000_000, 512.0 + i, 0.5 + i, 4, f"id{i}")
    yield fake
    fake.stop()


def _client(fake) -> RESTClient:
    return RESTClient(api_key=FakePolygon.API_KEY, base=fake.url, retries=0)


def test_the_official_client_pages_through_every_aggregate_with_a_bearer_key(polygon):
    aggs = list(_client(polygon).list_aggs("AAPL", 1, "minute", DAY, DAY, adjusted=True, sort="asc", limit=200))
    assert len(aggs) == 960  # 04:00-20:00 ET, as Polygon serves, over 5 pages read through next_url
    assert [a.timestamp for a in aggs] == sorted(a.timestamp for a in aggs)
    assert all(isinstance(a.close, float) and a.volume > 0 and a.transactions == 12 for a in aggs)
    assert all("apiKey" not in q for _, q in polygon.requests)  # the key came as Authorization: Bearer
    assert {h["Authorization"] for h in polygon.headers} == {f"Bearer {FakePolygon.API_KEY}"}
    newest = _client(polygon).get_aggs("AAPL", 1, "minute", DAY, DAY, sort="desc", limit=3)
    assert [a.timestamp for a in newest] == sorted((a.timestamp for a in aggs), reverse=True)[:3]


def test_the_official_client_reads_trades_previous_close_and_a_delayed_status(polygon):
    polygon.delayed = True
    trades = list(_client(polygon).list_trades("SPY", timestamp_gte=OPEN_MS * 1_000_000, order="asc", limit=2))
    assert [t.size for t in trades] == [0.5, 1.5, 2.5, 3.5, 4.5] and trades[0].exchange == 4
    assert [t.id for t in trades] == [f"id{i}" for i in range(5)]
    assert _client(polygon).get_previous_close_agg("AAPL") == []
    assert len(_client(polygon).get_aggs("AAPL", 1, "minute", DAY, DAY)) == 200


def test_the_official_client_reports_a_plan_limit_as_not_authorized(polygon):
    polygon.history_days = 0
    with pytest.raises(BadResponse, match="NOT_AUTHORIZED"):
        _client(polygon).get_aggs("AAPL", 1, "minute", DAY, DAY)


def test_the_official_socket_client_reads_the_fake_streams_statuses_and_events():
    trade = {"ev": "T", "sym": "SPY", "x": 4, "i": "1", "z": 3, "p": 512.31, "s": 0.25, "c": [12, 37],
             "t": OPEN_MS + 123, "q": 1}
    socket = FakePolygonSocket(lambda n: ([[trade, am_event("SPY", OPEN_MS, 0)]], False)).start()
    received = []

    async def main():
        client = WebSocketClient(api_key=FakePolygon.API_KEY, feed=socket.url.removeprefix("ws://"), market="stocks",
                                 secure=False, subscriptions=["T.SPY", "AM.SPY"], max_reconnects=0)

        async def handle(messages):
            received.extend(messages)
            if len(received) >= 2:
                await client.close()

        await asyncio.wait_for(client.connect(handle), 10)

    try:
        asyncio.run(main())
    finally:
        socket.stop()
    trade_msg, agg = received
    assert isinstance(trade_msg, EquityTrade) and (trade_msg.size, trade_msg.price) == (0.25, 512.31)
    assert isinstance(agg, EquityAgg) and agg.start_timestamp == OPEN_MS and agg.close is not None
    assert [m["action"] for m in socket.received] == ["auth", "subscribe"]
