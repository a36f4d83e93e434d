"""Polygon client: REST aggregates and trades (history, backfill, gap filling) and the WebSocket stream.

REST: /v2/aggs/ticker/{T}/range/{n}/{unit}/{from}/{to} with epoch-millisecond bounds for bar
series, /v3/trades/{T} with nanosecond `timestamp.gte/lt` for tick series; every `next_url` page
read before anything is returned (a bad page rejects the whole range), HTTP 429 waited out per
Retry-After.

WebSocket (the `websockets` library, asyncio): connect -> status "connected",
send auth -> "auth_success", subscribe T.<sym> (ticks) / AM.<sym> (minute bars). When the socket
drops, it reconnects with exponential backoff and jitter and calls `on_reconnect`, which the
service uses to fill the gap through REST; bars are idempotent on (series, ts) so the overlap
between REST and the stream is stored once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import urllib.parse
from datetime import date

import pandas as pd
from django.conf import settings

from .base import (
    AuthFailed,
    MalformedPayload,
    Provider,
    ProviderError,
    RateLimited,
    Target,
    http_get,
    local_day_bounds_ms,
    redact,
    retry_after_seconds,
)

logger = logging.getLogger(__name__)

TIMESPANS = {1: (1, "second"), 60: (1, "minute"), 300: (5, "minute"), 900: (15, "minute"), 1800: (30, "minute"),
             3600: (1, "hour"), 86400: (1, "day")}
AGG_FIELDS = {"t": "ts", "o": "open", "h": "high", "l": "low", "c": "close", "v": "volume"}
TRADE_FIELDS = ("sip_timestamp", "price", "size", "exchange", "id")
DEFAULT_429_WAIT = 12.0  # free plan: 5 requests a minute
MAX_PAGES = 1000


class Polygon(Provider):
    name = "polygon"
    chunking = "day"

    def base_url(self) -> str:
        return settings.POLYGON_BASE_URL.rstrip("/")

    # --- REST -----------------------------------------------------------------------------------
    def _get_json(self, url: str, params: dict | None = None) -> dict:
        params = {**(params or {}), "apiKey": self.api_key}

        def call():
            resp = http_get(url, params)
            if resp.status == 429:
                raise RateLimited("Polygon rate limit (HTTP 429).",
                                  retry_after=retry_after_seconds(resp.headers, DEFAULT_429_WAIT))
            if resp.status == 403 and _status(resp) == "NOT_AUTHORIZED":
                # The key is fine; the plan does not cover this data (too far back, or a market it lacks).
                raise ProviderError(f"Polygon: your plan does not include this data ({_message(resp)}). Ask for a "
                                    "more recent range, or upgrade the Polygon plan.", permanent=True)
            if resp.status in (401, 403):
                raise AuthFailed(f"Polygon refused the key (HTTP {resp.status}): {_message(resp)}")
            if resp.status >= 500:
                raise ProviderError(f"Polygon answered HTTP {resp.status}.", retry_after=retry_after_seconds(resp.headers))
            if resp.status != 200:
                raise ProviderError(f"Polygon answered HTTP {resp.status}: {_message(resp)}", permanent=True)
            body = resp.json()
            if not isinstance(body, dict):
                raise MalformedPayload("Polygon answered JSON that is not an object.")
            if body.get("status") == "ERROR":
                raise ProviderError(f"Polygon: {body.get('error') or body.get('message') or 'error'}", permanent=True)
            return body

        return self.with_retries(call)

    def aggregates(self, symbol: str, bar_seconds: int, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Bars starting in [start_ms, end_ms), every page, as a frame with epoch-ms `ts`."""
        if bar_seconds not in TIMESPANS:
            raise ProviderError(f"Polygon aggregates do not come in {bar_seconds}s bars.", permanent=True)
        n, unit = TIMESPANS[bar_seconds]
        ticker = urllib.parse.quote(symbol, safe="")
        url = f"{self.base_url()}/v2/aggs/ticker/{ticker}/range/{n}/{unit}/{start_ms}/{end_ms - 1}"
        rows = self._pages(url, {"adjusted": "true", "sort": "asc", "limit": 50000}, "aggregates")
        return aggregates_frame(rows, start_ms, end_ms)

    def _pages(self, url: str, params: dict | None, what: str) -> list[dict]:
        rows: list[dict] = []
        for _ in range(MAX_PAGES):
            body = self._get_json(url, params)
            results = body.get("results") or []
            if not isinstance(results, list):
                raise MalformedPayload(f"Polygon {what}: `results` is not a list.")
            rows.extend(results)
            url, params = body.get("next_url"), None  # next_url carries the cursor; apiKey is re-added
            if not url:
                return rows
        raise ProviderError(f"Polygon {what}: more than {MAX_PAGES} pages; ask for a shorter range.", permanent=True)

    def trades(self, symbol: str, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Trades in [start_ms, end_ms), every page, as ticks whose ts (ms) and trade id match the
        stream's T events, so REST and stream overlaps are stored once."""
        ticker = urllib.parse.quote(symbol, safe="")
        params = {"timestamp.gte": start_ms * 1_000_000, "timestamp.lt": end_ms * 1_000_000, "order": "asc",
                  "sort": "timestamp", "limit": 50000}
        return trades_frame(self._pages(f"{self.base_url()}/v3/trades/{ticker}", params, "trades"))

    def fetch_history(self, target: Target, start: date, end: date) -> pd.DataFrame:
        start_ms, end_ms = local_day_bounds_ms(start, end, target.tz)
        return self.fetch_between(target, start_ms, end_ms)

    def fetch_between(self, target: Target, start_ms: int, end_ms: int) -> pd.DataFrame:
        if target.kind == "trade":
            return self.trades(target.symbol, start_ms, end_ms)
        if target.kind != "bar":
            raise ProviderError("Polygon serves bar and trade series, not metrics.", permanent=True)
        return self.aggregates(target.symbol, target.bar_seconds or 60, start_ms, end_ms)

    def events_to_frames(self, events: list[dict]):
        return events_to_frames(events)

    def test_connection(self) -> None:
        self._get_json(f"{self.base_url()}/v2/aggs/ticker/AAPL/prev")

    # --- WebSocket ------------------------------------------------------------------------------
    def ws_url(self) -> str:
        return settings.POLYGON_WS_URL.rstrip("/") + "/stocks"

    async def stream(self, targets: list[Target], on_events, *, stop, on_reconnect=None, **options) -> None:
        channels = ",".join(f"{'T' if t.kind == 'trade' else 'AM'}.{t.symbol}" for t in targets)
        await PolygonStream(url=self.ws_url(), api_key=self.api_key, channels=channels, on_events=on_events,
                            on_reconnect=on_reconnect, **options).run(stop)


def _status(resp) -> str | None:
    try:
        body = resp.json()
    except ValueError:
        return None
    return body.get("status") if isinstance(body, dict) else None


def _message(resp) -> str:
    try:
        body = json.loads(resp.body)
        return str(body.get("error") or body.get("message") or body)[:300]
    except (ValueError, AttributeError):
        return resp.body[:300].decode("utf-8", "replace")


def aggregates_frame(rows: list[dict], start_ms: int | None = None, end_ms: int | None = None) -> pd.DataFrame:
    """REST `results` (or AM events) -> frame; a result missing a field rejects the payload."""
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict) or any(k not in r for k in AGG_FIELDS)]
    if bad:
        raise MalformedPayload(f"Polygon aggregates: {len(bad)} result(s) lack t/o/h/l/c/v (first at index {bad[0]}).",
                               details={"indexes": bad[:20]})
    frame = pd.DataFrame({name: [r[k] for r in rows] for k, name in AGG_FIELDS.items()})
    if start_ms is not None and len(frame):
        t = pd.to_numeric(frame["ts"], errors="coerce")
        frame = frame.loc[(t >= start_ms) & (t < end_ms) | t.isna()]  # unparsable times stay, for validation to report
    return frame.reset_index(drop=True)


def trade_id(exchange, trade: object) -> str | None:
    """The stream's and REST's common trade identity: "<exchange>:<id>"."""
    return None if trade in (None, "") else f"{'' if exchange is None else exchange}:{trade}"


def trades_frame(rows: list[dict]) -> pd.DataFrame:
    """/v3/trades `results` -> ticks (ts in ms, as the stream's `t`); a result missing a field rejects
    the payload."""
    bad = [i for i, r in enumerate(rows) if not isinstance(r, dict) or any(k not in r for k in TRADE_FIELDS)]
    if bad:
        raise MalformedPayload(f"Polygon trades: {len(bad)} result(s) lack sip_timestamp/price/size/exchange/id "
                               f"(first at index {bad[0]}).", details={"indexes": bad[:20]})
    return pd.DataFrame({"ts": [r["sip_timestamp"] // 1_000_000 if isinstance(r["sip_timestamp"], int)
                                else r["sip_timestamp"] for r in rows],
                         "price": [r["price"] for r in rows], "size": [r["size"] for r in rows],
                         "trade_id": [trade_id(r["exchange"], r["id"]) for r in rows]},
                        columns=["ts", "price", "size", "trade_id"])


def events_to_frames(events: list[dict]) -> dict[tuple[str, str], pd.DataFrame]:
    """Stream events grouped by (symbol, kind): AM -> bars (ts = start s), T -> ticks with trade ids."""
    bars: dict[str, list[dict]] = {}
    trades: dict[str, list[dict]] = {}
    for ev in events:
        if not isinstance(ev, dict):
            continue
        if ev.get("ev") == "AM":
            bars.setdefault(str(ev.get("sym")), []).append(
                {"t": ev.get("s"), "o": ev.get("o"), "h": ev.get("h"), "l": ev.get("l"), "c": ev.get("c"),
                 "v": ev.get("v")})
        elif ev.get("ev") == "T":
            trades.setdefault(str(ev.get("sym")), []).append(
                {"ts": ev.get("t"), "price": ev.get("p"), "size": ev.get("s"),
                 "trade_id": trade_id(ev.get("x", ""), ev.get("i"))})
    out = {(sym, "bar"): aggregates_frame(rows) for sym, rows in bars.items()}
    out.update({(sym, "trade"): pd.DataFrame(rows) for sym, rows in trades.items()})
    return out


class StreamClosed(Exception):
    pass


class PolygonStream:
    """One logical subscription kept alive across reconnects.

    Delays: min(max_delay, base_delay * 2**attempt) scaled by a jitter in [0.5, 1), so a fleet of
    workers that lost the socket together does not reconnect in lockstep. The attempt counter
    resets once a connection authenticates again."""

    def __init__(self, *, url: str, api_key: str, channels: str, on_events, on_reconnect=None,
                 base_delay: float = 1.0, max_delay: float = 60.0, max_attempts: int | None = None,
                 sleep=asyncio.sleep, rng=random.random, open_timeout: float = 10.0):
        self.url, self.api_key, self.channels = url, api_key, channels
        self.on_events, self.on_reconnect = on_events, on_reconnect
        self.base_delay, self.max_delay, self.max_attempts = base_delay, max_delay, max_attempts
        self.sleep, self.rng, self.open_timeout = sleep, rng, open_timeout
        self.connections = 0
        self.delays: list[float] = []
        self._authenticated = False

    def backoff(self, attempt: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** attempt) * (0.5 + self.rng() / 2)

    async def run(self, stop: asyncio.Event) -> None:
        attempt = 0
        while not stop.is_set():
            try:
                await self._session(stop)
            except AuthFailed:
                raise
            except (TimeoutError, StreamClosed, OSError) as exc:
                if stop.is_set():
                    return
                logger.warning("polygon stream dropped: %s", redact(str(exc), self.api_key))
            if stop.is_set():
                return
            attempt = 0 if self._authenticated else attempt + 1
            if self.max_attempts is not None and attempt >= self.max_attempts:
                raise ProviderError(f"Polygon stream: gave up after {attempt} failed reconnects.")
            delay = self.backoff(attempt)
            self.delays.append(delay)
            await self.sleep(delay)

    async def _session(self, stop: asyncio.Event) -> None:
        self._authenticated = False
        conn = await _Connection.open(self.url, self.open_timeout)
        self.connections += 1
        try:
            await self._expect(conn, "connected")
            await conn.send({"action": "auth", "params": self.api_key})
            await self._expect(conn, "auth_success", failure="auth_failed")
            self._authenticated = True
            await conn.send({"action": "subscribe", "params": self.channels})
            if self.on_reconnect is not None:
                # Subscribed first, then backfilled: events arriving meanwhile queue up, so the
                # REST range and the live stream overlap rather than leave a hole. The first
                # connection does it too: a restarted process has a gap of its own.
                await self.on_reconnect()
            while not stop.is_set():
                messages = await conn.receive(stop)
                if messages is None:
                    return
                data = [m for m in messages if isinstance(m, dict) and m.get("ev") != "status"]
                for m in messages:
                    if isinstance(m, dict) and m.get("ev") == "status" and m.get("status") in ("auth_failed",):
                        raise AuthFailed(f"Polygon stream: {m.get('message', 'authentication failed')}")
                    _stop_if_max_connections(m)
                if data:
                    await self.on_events(data)
        finally:
            await conn.close()

    async def _expect(self, conn, status: str, failure: str | None = None) -> None:
        while True:
            messages = await asyncio.wait_for(conn.receive(None), self.open_timeout)
            for m in messages or []:
                _stop_if_max_connections(m)
                if isinstance(m, dict) and m.get("ev") == "status":
                    if m.get("status") == status:
                        return
                    if failure and m.get("status") == failure:
                        raise AuthFailed(f"Polygon stream: {m.get('message', failure)}")


def _stop_if_max_connections(message) -> None:
    """Polygon allows a plan a number of sockets per key (one on most): past it, it says
    `max_connections` and closes. Reconnecting would only take the other stream's place or be
    refused again, so the stream stops and says why."""
    if isinstance(message, dict) and message.get("ev") == "status" and message.get("status") == "max_connections":
        raise ProviderError("Polygon stream: another connection already uses this key (max_connections: "
                            f"{message.get('message', '')}). Stopped reconnecting: stop the other stream, or raise "
                            "the plan's connection limit.", permanent=True)


class _Connection:
    """A thin face over a `websockets` client connection: open, send JSON, receive JSON arrays."""

    def __init__(self, ws):
        self.ws = ws

    @classmethod
    async def open(cls, url: str, timeout: float) -> _Connection:
        from websockets.asyncio.client import connect

        # Keepalive pings find a half-open socket (no FIN ever arrives) within ~40 s.
        ws = await connect(url, open_timeout=timeout, ping_interval=20, ping_timeout=20, max_size=2 ** 24)
        return cls(ws)

    async def send(self, message: dict) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            await self.ws.send(json.dumps(message))
        except ConnectionClosed as exc:
            raise StreamClosed(str(exc)) from None

    async def receive(self, stop: asyncio.Event | None) -> list | None:
        """The next frame's JSON array; None once `stop` is set; raises StreamClosed on a drop."""
        from websockets.exceptions import ConnectionClosed

        get = asyncio.ensure_future(self.ws.recv())
        waiters = {get}
        stopper = asyncio.ensure_future(stop.wait()) if stop is not None else None
        if stopper:
            waiters.add(stopper)
        done, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()  # recv() is cancellation-safe: no frame is lost
        if get not in done:
            return None
        try:
            item = get.result()
        except ConnectionClosed as exc:
            raise StreamClosed(str(exc)) from None
        try:
            body = json.loads(item)
        except ValueError:
            logger.warning("polygon stream: dropped a frame that is not JSON")
            return []
        return body if isinstance(body, list) else [body]

    async def close(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 5)
        except (TimeoutError, OSError):
            pass
