"""Alpha Vantage client: TIME_SERIES_INTRADAY as CSV, month slices for history.

Its timestamps are exchange-local (US/Eastern) and naive; watchlists.ingest localises them with the
series' zone, so a month that crosses a DST change lands at the right UTC instants. Alpha Vantage
answers rate limits and errors with HTTP 200 and a JSON body ("Note", "Information",
"Error Message") instead of the CSV; those are recognised here and never reach the store.
"""

from __future__ import annotations

import io
import json
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
    retry_after_seconds,
)

INTERVALS = {60: "1min", 300: "5min", 900: "15min", 1800: "30min", 3600: "60min"}
CSV_HEADER = ["timestamp", "open", "high", "low", "close", "volume"]
# Alpha Vantage does not send Retry-After; its per-minute quota resets within a minute.
PER_MINUTE_WAIT = 60.0
PER_SECOND_WAIT = 2.0  # the free key's burst limit is 1 request per second


class AlphaVantage(Provider):
    name = "alphavantage"
    chunking = "month"  # one month=YYYY-MM request per chunk

    def base_url(self) -> str:
        return settings.ALPHAVANTAGE_BASE_URL.rstrip("/") + "/query"

    def _interval(self, target: Target) -> str:
        if target.kind != "bar" or target.bar_seconds not in INTERVALS:
            raise ProviderError(f"Alpha Vantage serves 1, 5, 15, 30 or 60-minute bars, not "
                                f"{target.kind} with {target.bar_seconds}s.", permanent=True)
        return INTERVALS[target.bar_seconds]

    def _get_csv(self, params: dict) -> pd.DataFrame:
        # extended_hours=false: the regular session only (Alpha Vantage serves 04:00-20:00 ET by
        # default); the project stores the regular session (watchlists.providers.services.store).
        params = {"function": "TIME_SERIES_INTRADAY", "datatype": "csv", "outputsize": "full",
                  "extended_hours": "false", **params, "apikey": self.api_key}

        def call():
            resp = http_get(self.base_url(), params)
            if resp.status == 429 or resp.status >= 500:
                raise RateLimited(f"Alpha Vantage answered HTTP {resp.status}.",
                                  retry_after=retry_after_seconds(resp.headers, PER_MINUTE_WAIT if resp.status == 429 else None))
            if resp.status != 200:
                raise ProviderError(f"Alpha Vantage answered HTTP {resp.status}.", permanent=resp.status < 500)
            return parse_body(resp.body, resp.headers)

        return self.with_retries(call)

    def fetch_history(self, target: Target, start: date, end: date) -> pd.DataFrame:
        interval = self._interval(target)
        frames = []
        month = start.replace(day=1)
        while month <= end:
            frames.append(self._get_csv({"symbol": target.symbol, "interval": interval,
                                         "month": f"{month:%Y-%m}"}))
            month = (month.replace(day=28) + pd.Timedelta(days=4)).replace(day=1)
        return _between(pd.concat(frames, ignore_index=True) if frames else _empty(), start, end)

    def fetch_latest_day(self, target: Target, day: date) -> pd.DataFrame:
        # Without `month`, outputsize=full covers the trailing 30 days: one call for the day just closed.
        frame = self._get_csv({"symbol": target.symbol, "interval": self._interval(target)})
        return _between(frame, day, day)

    def test_connection(self) -> None:
        self._get_csv({"symbol": "IBM", "interval": "60min", "outputsize": "compact"})


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=CSV_HEADER)


def _between(frame: pd.DataFrame, start: date, end: date) -> pd.DataFrame:
    # Timestamps are "YYYY-MM-DD HH:MM:SS" local time: the date is their first ten characters.
    day = frame["timestamp"].astype(str).str.slice(0, 10)
    keep = (day >= start.isoformat()) & (day <= end.isoformat())
    return frame.loc[keep].sort_values("timestamp", kind="stable").reset_index(drop=True)


def parse_body(body: bytes, headers: dict | None = None) -> pd.DataFrame:
    """The CSV as a frame of strings, or the provider's error raised as a ProviderError."""
    text = body.decode("utf-8-sig", errors="replace").strip()
    if text.startswith("{"):
        raise _json_error(text)
    if not text:
        raise MalformedPayload("Alpha Vantage answered an empty body.")
    first_line = text.split("\n", 1)[0].strip().lower().replace(" ", "")
    if first_line.split(",") != CSV_HEADER:
        raise MalformedPayload(f"Alpha Vantage answered an unexpected CSV header: {first_line[:120]!r}.")
    try:
        return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise MalformedPayload(f"Alpha Vantage answered an unreadable CSV: {exc}") from None


def _json_error(text: str) -> ProviderError:
    try:
        body = json.loads(text)
    except ValueError:
        return MalformedPayload("Alpha Vantage answered neither CSV nor valid JSON.")
    if not isinstance(body, dict):
        return MalformedPayload("Alpha Vantage answered JSON where CSV was expected.")
    if "Error Message" in body:
        return ProviderError(f"Alpha Vantage: {body['Error Message']}", permanent=True)
    message = str(body.get("Note") or body.get("Information") or "")
    if not message:
        return MalformedPayload("Alpha Vantage answered JSON where CSV was expected.")
    lowered = message.lower()
    # The current burst note ("1 request per second") also names the daily quota ("25 requests per
    # day"): it is a short wait, recognised before the daily limit.
    if "per second" in lowered or "spreading out" in lowered:
        return RateLimited(f"Alpha Vantage rate limit: {message}", retry_after=PER_SECOND_WAIT)
    # The classic per-minute Note mentions both quotas ("5 calls per minute and 500 calls per day"),
    # so the minute case is recognised first.
    if "per minute" in lowered or "frequency" in lowered:
        return RateLimited(f"Alpha Vantage rate limit: {message}", retry_after=PER_MINUTE_WAIT)
    if "per day" in lowered or "daily" in lowered:
        # The daily quota resets at midnight (US/Eastern); the next scheduled run picks it up.
        return RateLimited(f"Alpha Vantage daily limit reached: {message}", retry_after=_seconds_to_midnight())
    if "apikey" in lowered.replace(" ", "") and ("invalid" in lowered or "missing" in lowered):
        return AuthFailed(f"Alpha Vantage: {message}")
    return ProviderError(f"Alpha Vantage: {message}", permanent=True)


def _seconds_to_midnight() -> float:
    now = pd.Timestamp.now(tz="America/New_York")
    return float((now.normalize() + pd.Timedelta(days=1) - now).total_seconds())
