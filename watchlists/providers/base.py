"""The provider interface, its errors, and the one HTTP helper the provider clients share.

A provider answers raw frames (a time column plus value columns, in the provider's own time
convention); services.py validates them with watchlists.ingest and stores them. Providers never
write to the store themselves, so a payload is validated whole before any of it is stored.
"""

from __future__ import annotations

import email.utils
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from importlib import import_module

import pandas as pd

USER_AGENT = "AnomalyHub/1.0 (+market-data import)"
HTTP_TIMEOUT = 30


class ProviderError(Exception):
    """A provider refused or failed. `permanent` errors (bad key, unknown symbol) are not retried;
    `retry_after` (seconds) is set when the provider said how long to wait."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None,
                 details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.retry_after = retry_after
        self.details = details or {}


class RateLimited(ProviderError):
    pass


class AuthFailed(ProviderError):
    def __init__(self, message: str, **kw):
        super().__init__(message, permanent=True, **kw)


class MalformedPayload(ProviderError):
    """The provider answered something we cannot read. Nothing of that payload is stored."""

    def __init__(self, message: str, **kw):
        super().__init__(message, permanent=True, **kw)


@dataclass(frozen=True)
class Target:
    """What to fetch: the provider's symbol, the series' kind and bar size, and its exchange zone."""

    symbol: str
    kind: str = "bar"
    bar_seconds: int | None = 60
    tz: str = "America/New_York"


EventHandler = Callable[[list[dict]], Awaitable[None]]


class Provider(ABC):
    name: str = ""
    # How much history one request covers: backfills are cut into chunks of this shape so each
    # chunk is one atomic, resumable step.
    chunking: str = "day"

    def __init__(self, *, api_key: str = "", sleep: Callable[[float], None] = time.sleep,
                 max_attempts: int = 5, max_wait: float = 120.0):
        self.api_key = api_key
        self.sleep = sleep
        self.max_attempts = max_attempts
        self.max_wait = max_wait

    @abstractmethod
    def fetch_history(self, target: Target, start: date, end: date) -> pd.DataFrame:
        """Bars/ticks of exchange-local days start..end (inclusive), as one frame."""

    def fetch_between(self, target: Target, start_ms: int, end_ms: int) -> pd.DataFrame:
        """Points in [start_ms, end_ms) (epoch ms): the gap after a stream reconnect."""
        tz = target.tz
        first = pd.Timestamp(start_ms, unit="ms", tz="UTC").tz_convert(tz).date()
        last = pd.Timestamp(end_ms - 1, unit="ms", tz="UTC").tz_convert(tz).date()
        return self.fetch_history(target, first, last)

    def events_to_frames(self, events: list[dict]) -> dict[tuple[str, str | None], pd.DataFrame]:
        """Stream events grouped by (provider symbol, kind); kind None = the series' own kind."""
        rows: dict[str, list[dict]] = {}
        for ev in events:
            rows.setdefault(str(ev.get("sym")), []).append(ev.get("row", {}))
        return {(sym, None): pd.DataFrame(r) for sym, r in rows.items()}

    def fetch_latest_day(self, target: Target, day: date) -> pd.DataFrame:
        """The day just closed (the daily import). Providers with a cheaper 'latest' call override it."""
        return self.fetch_history(target, day, day)

    async def stream(self, targets: list[Target], on_events: EventHandler, *, stop, on_reconnect=None) -> None:
        """Live events until `stop` (an asyncio.Event) is set. Not every provider streams."""
        raise ProviderError(f"{self.name} has no live stream; use the daily import.", permanent=True)

    @abstractmethod
    def test_connection(self) -> None:
        """Raises ProviderError when the credentials or the service do not work."""

    def chunks(self, start: date, end: date) -> list[tuple[date, date]]:
        return split(self.chunking, start, end)

    # --- retries -----------------------------------------------------------------------------
    def with_retries(self, call: Callable[[], object]):
        """Runs `call`, waiting out rate limits and transient failures (advertised delay, else
        exponential backoff). Permanent errors and the last failure are raised to the caller."""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return call()
            except ProviderError as exc:
                exc.message = redact(exc.message, self.api_key)
                delay = exc.retry_after if exc.retry_after is not None else min(2 ** attempt, 30)
                # A daily quota (hours away) is not waited for in a worker: the next run picks it up.
                if exc.permanent or attempt == self.max_attempts or delay > self.max_wait:
                    raise
                self.sleep(delay)
        raise AssertionError("unreachable")


def split(chunking: str, start: date, end: date) -> list[tuple[date, date]]:
    if chunking == "month":
        return month_chunks(start, end)
    return [(start + timedelta(days=i),) * 2 for i in range((end - start).days + 1)]


def month_chunks(start: date, end: date) -> list[tuple[date, date]]:
    out, cur = [], start
    while cur <= end:
        nxt = (cur.replace(day=1) + timedelta(days=32)).replace(day=1)
        out.append((cur, min(end, nxt - timedelta(days=1))))
        cur = nxt
    return out


def local_day_bounds_ms(day_start: date, day_end: date, tz: str) -> tuple[int, int]:
    """[local midnight of day_start, local midnight after day_end) in epoch milliseconds."""
    first = pd.Timestamp(day_start).tz_localize(tz)
    after = pd.Timestamp(day_end + timedelta(days=1)).tz_localize(tz)
    return int(first.value // 1_000_000), int(after.value // 1_000_000)


# --- HTTP ------------------------------------------------------------------------------------
@dataclass
class HttpResponse:
    status: int
    headers: dict
    body: bytes

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise MalformedPayload(f"The provider answered invalid JSON: {exc}") from None


def http_get(url: str, params: dict | None = None, timeout: float = HTTP_TIMEOUT) -> HttpResponse:
    """GET with the standard library (no extra dependency). Network failures become transient errors."""
    if params:
        url = f"{url}{'&' if '?' in url else '?'}{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:  # noqa: S310 (https/127.0.0.1 only)
            return HttpResponse(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as exc:
        return HttpResponse(exc.code, {k.lower(): v for k, v in exc.headers.items()}, exc.read())
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise ProviderError(f"Could not reach the provider: {getattr(exc, 'reason', exc)}") from None


def retry_after_seconds(headers: dict, default: float | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), else `default`."""
    value = headers.get("retry-after")
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds()) if when else default


def redact(text: str, secret: str) -> str:
    """Error messages are shown to users and logged; the key must not leak through a URL."""
    return text.replace(secret, "***") if secret else text


# --- registry --------------------------------------------------------------------------------
PROVIDERS = {
    "alphavantage": "watchlists.providers.alphavantage.AlphaVantage",
    "polygon": "watchlists.providers.polygon.Polygon",
    "replay": "watchlists.providers.replay.Replay",
}


def provider_class(name: str) -> type[Provider]:
    module, _, cls = PROVIDERS[name].rpartition(".")
    return getattr(import_module(module), cls)
