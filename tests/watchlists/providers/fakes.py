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
# Alpha Vantage's current texts (HTTP 200, an "Information" key): the per-second burst note, which
# also names the daily quota, and the daily limit itself. "Note" (AV_NOTE) is the older per-minute text.
AV_BURST = ("Thank you for using Alpha Vantage! Please consider spreading out your free API requests more "
            "sparingly (1 request per second). You may subscribe to any of the premium plans at "
            "https://www.alphavantage.co/premium/ to lift the free key rate limit (25 requests per day) and "
            "instantly unlock all premium endpoints")
AV_DAILY = ("We have detected your API key as AVTESTKEY and our standard API rate limit is 25 requests per day. "
            "Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly "
            "remove all daily rate limits.")
AV_ERROR = ("Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) "
            "for TIME_SERIES_INTRADAY.")


def session_minutes(day: date, tz: str = "America/New_York", open_="09:30", close="16:00") -> pd.DatetimeIndex:
    """Local minute starts of a regular session (no calendar: the fake's own notion)."""
    start = pd.Timestamp(f"{day} {open_}").tz_localize(tz)
    end = pd.Timestamp(f"{day} {close}").tz_localize(tz)
    return pd.date_range(start, end, freq="1min", inclusive="left")


def with_extended_hours(minutes: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The regular-session minutes plus each of their days' pre-market (04:00-09:30) and after-hours
    (16:00-20:00) minutes, as Alpha Vantage (extended_hours=true, its default) and Polygon serve."""
    days = sorted({ts.date() for ts in minutes})
    extra = [session_minutes(day, str(minutes.tz), "04:00", "09:30").append(
        session_minutes(day, str(minutes.tz), "16:00", "20:00")) for day in days]
    return minutes.append(extra).sort_values() if extra else minutes


def is_extended(ts: pd.Timestamp) -> bool:
    local = ts.tz_convert("America/New_York")
    return not ("09:30" <= f"{local:%H:%M}" < "16:00")


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


def av_json(symbol: str, interval: str, minutes: pd.DatetimeIndex) -> str:
    """Alpha Vantage intraday JSON (datatype=json, the default): "Meta Data" and "Time Series (1min)",
    newest first, values as strings."""
    series = {}
    for i, ts in sorted(enumerate(minutes), key=lambda x: x[1], reverse=True):
        o, h, lo, c, v = bar_values(i)
        series[f"{ts:%Y-%m-%d %H:%M:%S}"] = {"1. open": f"{o:.4f}", "2. high": f"{h:.4f}", "3. low": f"{lo:.4f}",
                                             "4. close": f"{c:.4f}", "5. volume": str(v)}
    last = f"{minutes.max():%Y-%m-%d %H:%M:%S}" if len(minutes) else ""
    meta = {"1. Information": f"Intraday ({interval}) open, high, low, close prices and volume", "2. Symbol": symbol,
            "3. Last Refreshed": last, "4. Interval": interval, "5. Output Size": "Full size",
            "6. Time Zone": "US/Eastern"}
    return json.dumps({"Meta Data": meta, f"Time Series ({interval})": series})


class FakeServer:
    """A threaded HTTP server; `handle(method, path, query)` returns (status, headers, body)."""

    def __init__(self):
        self.requests: list[tuple[str, dict]] = []
        self.headers: list[dict] = []  # each request's headers, in the order of `requests`
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                fake.requests.append((parts.path, query))
                fake.headers.append(dict(self.headers.items()))
                status, headers, body = fake.handle(parts.path, query, dict(self.headers.items()))
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

    def handle(self, path, query, headers=None):
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

    def handle(self, path, query, headers=None):
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
        if query.get("extended_hours", "true") != "false":  # Alpha Vantage's default: 04:00-20:00 ET
            minutes = with_extended_hours(minutes)
        if month:
            keep = minutes.strftime("%Y-%m") == month
        else:
            end = pd.Timestamp(self.latest_end or minutes.max().date()).tz_localize(minutes.tz) + pd.Timedelta(days=1)
            keep = (minutes < end) & (minutes >= end - pd.Timedelta(days=30))
        if query.get("outputsize") == "compact":
            keep = keep & (minutes >= minutes[keep][-100:].min()) if keep.any() else keep
        if query.get("datatype", "json") == "csv":
            return 200, {"Content-Type": "text/csv"}, av_csv(minutes[keep])
        return 200, {"Content-Type": "application/json"}, av_json(symbol, query.get("interval", "1min"), minutes[keep])


class FakePolygon(FakeServer):
    """/v2/aggs/ticker/{T}/range/1/minute/{from}/{to} over `self.bars[T]` (epoch ms -> values)."""

    API_KEY = "pg-test-key"

    # Polygon's answers for plan limits (HTTP 403) and delayed plans (status DELAYED, HTTP 200).
    NOT_AUTHORIZED = {"status": "NOT_AUTHORIZED", "request_id": "na",
                      "message": "You are not entitled to this data. Please upgrade your plan at https://polygon.io/pricing"}

    def __init__(self, page_size: int = 500):
        super().__init__()
        self.bars: dict[str, dict[int, tuple]] = {}
        self.page_size = page_size
        self.history_days: int | None = None  # the plan's reach back from the newest bar; older: 403
        self.delayed = False  # a delayed plan: status "DELAYED" instead of "OK"
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
                      key=lambda t: t["sip_timestamp"], reverse=query.get("order") == "desc")
        page = int(query.get("cursor", 0))
        size = min(self.page_size, int(query.get("limit", 1000)))  # /v3/trades' default limit: 1,000
        chunk = [dict(r) for r in rows[page * size:(page + 1) * size]]
        if page in self.malformed_pages and chunk:
            del chunk[len(chunk) // 2]["price"]
        body = {"results": chunk, "status": "OK", "request_id": f"t{page}"}
        if (page + 1) * size < len(rows):
            # Polygon's next_url keeps the query; the cursor replaces the offset.
            options = "".join(f"&{k}={query[k]}" for k in ("order", "sort", "limit") if k in query)
            body["next_url"] = f"{self.url}{path}?cursor={page + 1}&timestamp.gte={gte}&timestamp.lt={lt}{options}"
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    def add_minutes(self, symbol: str, minutes: pd.DatetimeIndex, extended_hours: bool = True):
        """The session's bars, and (as Polygon's aggregates have them) its days' extended hours."""
        bars = self.bars.setdefault(symbol, {})
        for i, ts in enumerate(with_extended_hours(minutes) if extended_hours else minutes):
            bars[int(ts.value // 1_000_000)] = bar_values(i)

    @staticmethod
    def _key(query, headers) -> str | None:
        """Polygon takes the key as ?apiKey= or as `Authorization: Bearer` (the official client's way)."""
        auth = (headers or {}).get("Authorization", "")
        return auth[len("Bearer "):] if auth.startswith("Bearer ") else query.get("apiKey")

    def handle(self, path, query, headers=None):
        if self._key(query, headers) != self.API_KEY:
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
        bars = self.bars.get(ticker, {})
        if self.history_days is not None and bars and start < max(bars) - self.history_days * 86_400_000:
            return 403, {"Content-Type": "application/json"}, json.dumps(self.NOT_AUTHORIZED)
        times = sorted((t for t in bars if start <= t <= end), reverse=query.get("sort") == "desc")
        page = int(query.get("cursor", 0))
        size = min(self.page_size, int(query.get("limit", 5000)))  # Polygon's default limit: 5,000
        chunk = times[page * size:(page + 1) * size]
        results = []
        for t in chunk:
            o, h, lo, c, v = self.bars[ticker][t]
            results.append({"v": v, "vw": round((h + lo) / 2, 4), "o": o, "c": c, "h": h, "l": lo, "t": t, "n": 12})
        if page in self.malformed_pages and results:
            del results[len(results) // 2]["c"]
        body = {"ticker": ticker, "queryCount": len(times), "resultsCount": len(results),
                "adjusted": query.get("adjusted", "true") != "false", "results": results,
                "status": "DELAYED" if self.delayed else "OK", "request_id": f"req{page}", "count": len(results)}
        if (page + 1) * size < len(times):
            # Polygon's next_url keeps the query's options; the cursor replaces the offset (no key).
            options = {k: v for k, v in query.items() if k in ("adjusted", "sort", "limit")}
            body["next_url"] = f"{self.url}{path}?" + "&".join(f"{k}={v}" for k, v in
                                                               {"cursor": page + 1, **options}.items())
        return 200, {"Content-Type": "application/json"}, json.dumps(body)


class FakePolygonSocket:
    """Polygon's stocks WebSocket on 127.0.0.1 (`websockets` server, asyncio loop in a thread).

    `script(connection_number)` returns the event batches to send after subscription, and whether
    to drop the TCP connection afterwards (a disconnect mid-stream) or keep it open."""

    API_KEY = FakePolygon.API_KEY

    MAX_CONNECTIONS = ("Maximum number of websocket connections exceeded. You have reached the connection limit "
                       "for your account. Please contact support at https://polygon.io/contact to increase your limit.")

    def __init__(self, script: Callable[[int], tuple[list[list[dict]], bool]], max_connections: int = 1):
        self.script = script
        self.max_connections = max_connections  # authenticated sockets per key, as on Polygon's plans
        self.authenticated: set = set()  # the sockets that passed auth and are still open
        self.connections = 0
        self.received: list[dict] = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.port = None

    async def _handler(self, ws):
        self.connections += 1
        number = self.connections
        try:
            await self._serve(ws, number)
        finally:
            self.authenticated.discard(ws)

    async def _serve(self, ws, number):
        async def send(events):
            await ws.send(json.dumps(events))

        await send([{"ev": "status", "status": "connected", "message": "Connected Successfully"}])
        async for raw in ws:
            msg = json.loads(raw)
            self.received.append(msg)
            if msg.get("action") == "auth":
                ok = msg.get("params") == self.API_KEY
                if ok and len(self.authenticated) >= self.max_connections:
                    await send([{"ev": "status", "status": "max_connections", "message": self.MAX_CONNECTIONS}])
                    await ws.close()
                    return
                await send([{"ev": "status", "status": "auth_success" if ok else "auth_failed",
                             "message": "authenticated" if ok else "authentication failed"}])
                if ok:
                    self.authenticated.add(ws)
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
