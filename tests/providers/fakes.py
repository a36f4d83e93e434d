"""Local fake Alpha Vantage and Polygon servers on 127.0.0.1 speaking the providers' wire formats.

Built from the providers' documented examples: Alpha Vantage TIME_SERIES_INTRADAY CSV (newest
row first, exchange-local naive timestamps) and its HTTP-200 JSON "Note"/"Information"/"Error
Message" bodies; Polygon /v2/aggs results (t ms, o h l c v n vw) with next_url paging and 429;
Polygon's stocks WebSocket (status connected -> auth -> auth_success -> subscribe -> T/AM events).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pandas as pd

AV_NOTE = ("Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 "
           "calls per day. Please visit https://www.alphavantage.co/premium/ if you would like to target a "
           "higher API call frequency.")
AV_DAILY = ("Thank you for using Alpha Vantage! Our standard API rate limit is 25 requests per day. Please "
            "subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove "
            "all daily rate limits.")
AV_ERROR = ("Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) "
            "for TIME_SERIES_INTRADAY.")


def session_minutes(day: date, tz: str = "America/New_York", open_="09:30", close="16:00") -> pd.DatetimeIndex:
    """Local minute starts of a regular session (no calendar: the fake's own notion)."""
    start = pd.Timestamp(f"{day} {open_}").tz_localize(tz)
    end = pd.Timestamp(f"{day} {close}").tz_localize(tz)
    return pd.date_range(start, end, freq="1min", inclusive="left")


def bar_values(i: int) -> tuple[float, float, float, float, int]:
    base = 100 + (i % 97) * 0.01
    return base, base + 0.05, base - 0.05, base + 0.01, 1000 + i % 50


def av_csv(minutes: pd.DatetimeIndex) -> str:
    """Alpha Vantage intraday CSV: newest first, local naive 'YYYY-MM-DD HH:MM:SS'."""
    lines = ["timestamp,open,high,low,close,volume"]
    for i, ts in sorted(enumerate(minutes), key=lambda x: x[1], reverse=True):
        o, h, lo, c, v = bar_values(i)
        lines.append(f"{ts:%Y-%m-%d %H:%M:%S},{o:.4f},{h:.4f},{lo:.4f},{c:.4f},{v}")
    return "\r\n".join(lines) + "\r\n"


class FakeServer:
    """A threaded HTTP server; `handle(method, path, query)` returns (status, headers, body)."""

    def __init__(self):
        self.requests: list[tuple[str, dict]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                fake.requests.append((parts.path, query))
                status, headers, body = fake.handle(parts.path, query)
                data = body if isinstance(body, bytes) else body.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def handle(self, path, query):
        raise NotImplementedError


class FakeAlphaVantage(FakeServer):
    """Serves month slices (`month=`) and the trailing window (no `month`) from `self.minutes`."""

    API_KEY = "av-test-key"

    def __init__(self):
        super().__init__()
        self.minutes: dict[str, pd.DatetimeIndex] = {}
        self.scripted: list[tuple[int, dict, str]] = []  # answered first, in order
        self.overrides: dict[str, str] = {}  # month -> raw body
        self.latest_end: date | None = None

    def handle(self, path, query):
        if path != "/query" or query.get("function") != "TIME_SERIES_INTRADAY":
            return 200, {"Content-Type": "application/json"}, json.dumps({"Error Message": AV_ERROR})
        if query.get("apikey") != self.API_KEY:
            return 200, {"Content-Type": "application/json"}, json.dumps({"Information": "the parameter apikey is invalid or missing. Please claim your free API key on (https://www.alphavantage.co/support/#api-key)."})
        if self.scripted:
            return self.scripted.pop(0)
        symbol = query.get("symbol", "")
        if symbol not in self.minutes:
            return 200, {"Content-Type": "application/json"}, json.dumps({"Error Message": AV_ERROR})
        month = query.get("month")
        if month in self.overrides:
            return 200, {"Content-Type": "text/csv"}, self.overrides[month]
        minutes = self.minutes[symbol]
        if month:
            keep = minutes.strftime("%Y-%m") == month
        else:
            end = pd.Timestamp(self.latest_end or minutes.max().date()).tz_localize(minutes.tz) + pd.Timedelta(days=1)
            keep = (minutes < end) & (minutes >= end - pd.Timedelta(days=30))
        if query.get("outputsize") == "compact":
            keep = keep & (minutes >= minutes[keep][-100:].min()) if keep.any() else keep
        return 200, {"Content-Type": "text/csv"}, av_csv(minutes[keep])


class FakePolygon(FakeServer):
    """/v2/aggs/ticker/{T}/range/1/minute/{from}/{to} over `self.bars[T]` (epoch ms -> values)."""

    API_KEY = "pg-test-key"

    def __init__(self, page_size: int = 500):
        super().__init__()
        self.bars: dict[str, dict[int, tuple]] = {}
        self.page_size = page_size
        self.scripted: list[tuple[int, dict, str]] = []
        self.malformed_pages: set[int] = set()  # page numbers (0-based) answered with a broken result
        self.trades: dict[str, list[dict]] = {}  # /v3/trades results per ticker, any order

    def add_trade(self, symbol: str, sip_ns: int, price: float, size: int, exchange: int, trade_id: str):
        self.trades.setdefault(symbol, []).append(
            {"conditions": [12, 37], "exchange": exchange, "id": trade_id, "participant_timestamp": sip_ns - 7_000,
             "price": price, "sequence_number": len(self.trades[symbol]) + 1, "sip_timestamp": sip_ns,
             "size": size, "tape": 3})

    def _trades(self, path, ticker, query):
        """/v3/trades/{T}: timestamp.gte/lt in ns, sorted ascending, `next_url` with a cursor."""
        gte, lt = int(query.get("timestamp.gte", 0)), int(query.get("timestamp.lt", 2 ** 63 - 1))
        rows = sorted((t for t in self.trades.get(ticker, []) if gte <= t["sip_timestamp"] < lt),
                      key=lambda t: t["sip_timestamp"])
        page = int(query.get("cursor", 0))
        chunk = [dict(r) for r in rows[page * self.page_size:(page + 1) * self.page_size]]
        if page in self.malformed_pages and chunk:
            del chunk[len(chunk) // 2]["price"]
        body = {"results": chunk, "status": "OK", "request_id": f"t{page}"}
        if (page + 1) * self.page_size < len(rows):
            # Polygon's next_url keeps the query; the cursor replaces the offset.
            body["next_url"] = f"{self.url}{path}?cursor={page + 1}&timestamp.gte={gte}&timestamp.lt={lt}"
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def add_minutes(self, symbol: str, minutes: pd.DatetimeIndex):
        bars = self.bars.setdefault(symbol, {})
        for i, ts in enumerate(minutes):
            bars[int(ts.value // 1_000_000)] = bar_values(i)

    def handle(self, path, query):
        if query.get("apiKey") != self.API_KEY:
            return 401, {"Content-Type": "application/json"}, json.dumps(
                {"status": "ERROR", "request_id": "x", "error": "Unknown API Key"})
        if self.scripted:
            return self.scripted.pop(0)
        parts = path.strip("/").split("/")
        if parts[:2] == ["v3", "trades"] and len(parts) == 3:
            return self._trades(path, parts[2], query)
        if parts[:3] == ["v2", "aggs", "ticker"] and len(parts) == 5 and parts[4] == "prev":
            return 200, {}, json.dumps({"status": "OK", "ticker": parts[3], "results": [], "resultsCount": 0})
        if parts[:3] != ["v2", "aggs", "ticker"] or len(parts) != 9 or parts[4] != "range":
            return 404, {}, json.dumps({"status": "NOT_FOUND", "message": "Not found"})
        ticker, mult, unit, start, end = parts[3], int(parts[5]), parts[6], parts[7], parts[8]
        # from/to: epoch ms, or YYYY-MM-DD (whole days, inclusive).
        start = int(start) if start.isdigit() else int(pd.Timestamp(start).value // 1_000_000)
        end = int(end) if end.isdigit() else int((pd.Timestamp(end) + pd.Timedelta(days=1)).value // 1_000_000) - 1
        assert (mult, unit) == (1, "minute"), (mult, unit)
        times = sorted(t for t in self.bars.get(ticker, {}) if start <= t <= end)
        page = int(query.get("cursor", 0))
        chunk = times[page * self.page_size:(page + 1) * self.page_size]
        results = []
        for t in chunk:
            o, h, lo, c, v = self.bars[ticker][t]
            results.append({"v": v, "vw": round((h + lo) / 2, 4), "o": o, "c": c, "h": h, "l": lo, "t": t, "n": 12})
        if page in self.malformed_pages and results:
            del results[len(results) // 2]["c"]
        body = {"ticker": ticker, "queryCount": len(times), "resultsCount": len(results), "adjusted": True,
                "results": results, "status": "OK", "request_id": f"req{page}", "count": len(results)}
        if (page + 1) * self.page_size < len(times):
            body["next_url"] = f"{self.url}{path}?cursor={page + 1}"
        return 200, {"Content-Type": "application/json"}, json.dumps(body)


class FakePolygonSocket:
    """Polygon's stocks WebSocket on 127.0.0.1 (`websockets` server, asyncio loop in a thread).

    `script(connection_number)` returns the event batches to send after subscription, and whether
    to drop the TCP connection afterwards (a disconnect mid-stream) or keep it open."""

    API_KEY = FakePolygon.API_KEY

    def __init__(self, script: Callable[[int], tuple[list[list[dict]], bool]]):
        self.script = script
        self.connections = 0
        self.received: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = None

    async def _handler(self, ws):
        self.connections += 1
        number = self.connections

        async def send(events):
            await ws.send(json.dumps(events))

        await send([{"ev": "status", "status": "connected", "message": "Connected Successfully"}])
        async for raw in ws:
            msg = json.loads(raw)
            self.received.append(msg)
            if msg.get("action") == "auth":
                ok = msg.get("params") == self.API_KEY
                await send([{"ev": "status", "status": "auth_success" if ok else "auth_failed",
                             "message": "authenticated" if ok else "authentication failed"}])
            elif msg.get("action") == "subscribe":
                await send([{"ev": "status", "status": "success", "message": f"subscribed to: {msg['params']}"}])
                batches, drop = self.script(number)
                for batch in batches:
                    await send(batch)
                if drop:
                    await asyncio.sleep(0.05)
                    # No close frame: the TCP connection just dies, as on a network failure.
                    ws.transport.abort()
                    return

    def _run(self):
        from websockets.asyncio.server import serve

        async def start():
            return await serve(self._handler, "127.0.0.1", 0)

        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(start())
        self.port = next(iter(self.server.sockets)).getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self):
        self.thread.start()
        self.ready.wait(5)
        return self

    def stop(self):
        async def shutdown():
            self.server.close()
            await self.server.wait_closed()

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def am_event(symbol: str, start_ms: int, i: int) -> dict:
    o, h, lo, c, v = bar_values(i)
    return {"ev": "AM", "sym": symbol, "v": v, "av": 100000, "op": 100.0, "vw": o, "o": o, "c": c, "h": h, "l": lo,
            "a": o, "z": 10, "s": start_ms, "e": start_ms + 60_000}


def trading_days(start: date, end: date) -> list[date]:
    """Weekdays only; tests pick months without holidays on purpose or list them explicitly."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1) if (start + timedelta(days=i)).weekday() < 5]
