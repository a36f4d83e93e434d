"""Provider services: credentials, series links, imports, backfills, gap filling, live streams.

Keyword-only, actor first. Every write of points goes through watchlists.services.ingest (atomic,
idempotent); every provider failure is written to the series' link (`last_error`) where the API
shows it, and re-raised for the caller (task, command, view) to decide about retries.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from accounts.tenancy import Actor, system_actor
from anomalyhub.lib.errors import InvalidError

from .. import calendars, ingest
from .. import services as series_services
from ..models import Series
from ..store import reader
from ..store.timeconv import US, from_us, to_us
from ..store.writer import Points
from . import crypto, schedule
from .base import MalformedPayload, Provider, ProviderError, Target, provider_class, split
from .models import Backfill, ProviderCredential, ProviderName, SeriesProvider

logger = logging.getLogger(__name__)
MAX_BACKFILL_DAYS = 366 * 5
GAP_DAYS = 5


# --- credentials ---------------------------------------------------------------------------------
def save_credential(*, actor: Actor, provider: str, secret: str) -> ProviderCredential:
    """Sets (or replaces) the organization's key for a provider, encrypted at rest."""
    actor.require("manage")
    if provider not in (ProviderName.ALPHAVANTAGE, ProviderName.POLYGON):
        raise InvalidError(f"Unknown provider '{provider}'.", details={"provider": ["Use alphavantage or polygon."]})
    secret = (secret or "").strip()
    if not secret or len(secret) > 500:
        raise InvalidError("Give the provider's API key.", details={"secret": ["1 to 500 characters."]})
    credential, _ = ProviderCredential.objects.update_or_create(
        organization_id=actor.organization_id, provider=provider,
        defaults={"secret_encrypted": crypto.encrypt(secret), "last_test_ok": None, "last_tested_at": None,
                  "last_error": ""})
    return credential


def delete_credential(*, actor: Actor, credential: ProviderCredential) -> None:
    actor.require("manage")
    credential.delete()


def build_provider(*, organization_id: int, provider: str, **options) -> Provider:
    """The provider client with the organization's decrypted key (replay needs none)."""
    cls = provider_class(provider)
    if provider == ProviderName.REPLAY:
        return cls(**options)
    credential = ProviderCredential.objects.filter(organization_id=organization_id, provider=provider).first()
    if credential is None:
        raise ProviderError(f"No {ProviderName(provider).label} API key is set for this organization.", permanent=True)
    try:
        secret = crypto.decrypt(credential.secret_encrypted)
    except crypto.CredentialUnreadable as exc:
        raise ProviderError(str(exc), permanent=True) from None
    return cls(api_key=secret, **options)


def test_connection(*, actor: Actor, credential: ProviderCredential, **options) -> ProviderCredential:
    """Calls the provider once with the stored key and records the outcome on the credential."""
    actor.require("manage")
    options.setdefault("max_attempts", 1)  # a button press should answer now, not after retries
    try:
        build_provider(organization_id=credential.organization_id, provider=credential.provider,
                       **options).test_connection()
        credential.last_test_ok, credential.last_error = True, ""
    except ProviderError as exc:
        credential.last_test_ok, credential.last_error = False, exc.message
    credential.last_tested_at = timezone.now()
    credential.save(update_fields=["last_test_ok", "last_error", "last_tested_at", "updated_at"])
    return credential


# --- series links --------------------------------------------------------------------------------
def connect_series(*, actor: Actor, series: Series, provider: str, provider_symbol: str = "",
                   enabled: bool = True) -> SeriesProvider:
    """Makes `provider` the source of `series` (replacing any previous one)."""
    actor.require("change")
    if series.organization_id != actor.organization_id:
        raise InvalidError("Unknown series.")
    if provider not in ProviderName.values:
        raise InvalidError(f"Unknown provider '{provider}'.", details={"provider": [f"One of {ProviderName.values}."]})
    if provider != ProviderName.REPLAY and not series.exchange:
        raise InvalidError("Market-data providers serve exchange-listed series; set the series' exchange "
                           "(e.g. XNYS) first.", details={"series": ["Series has no exchange."]})
    if provider == ProviderName.ALPHAVANTAGE and (series.kind != "bar" or series.bar_seconds not in (60, 300, 900, 1800, 3600)):
        raise InvalidError("Alpha Vantage serves 1, 5, 15, 30 and 60-minute bars only.",
                           details={"series": ["Use a bar series with bar_seconds 60, 300, 900, 1800 or 3600."]})
    link, _ = SeriesProvider.objects.update_or_create(
        series=series, defaults={"organization_id": series.organization_id, "provider": provider,
                                 "provider_symbol": (provider_symbol or "").strip(), "enabled": enabled})
    return link


def update_link(*, actor: Actor, link: SeriesProvider, **fields) -> SeriesProvider:
    actor.require("change")
    return connect_series(actor=actor, series=link.series, provider=fields.get("provider", link.provider),
                          provider_symbol=fields.get("provider_symbol", link.provider_symbol),
                          enabled=fields.get("enabled", link.enabled))


def disconnect_series(*, actor: Actor, link: SeriesProvider) -> None:
    actor.require("change")
    link.delete()


def target_for(link: SeriesProvider) -> Target:
    series = link.series
    return Target(symbol=link.symbol, kind=series.kind, bar_seconds=series.bar_seconds,
                  tz=series_services.series_timezone(series))


def record_error(link: SeriesProvider, message: str) -> None:
    # A plain UPDATE, outside the caller's failed work, so the error survives its rollback.
    SeriesProvider.objects.filter(pk=link.pk).update(last_error=message[:2000], last_error_at=timezone.now())
    link.last_error = message[:2000]


def clear_error(link: SeriesProvider) -> None:
    if link.last_error:
        SeriesProvider.objects.filter(pk=link.pk).update(last_error="")
        link.last_error = ""


# --- storing what a provider answered ------------------------------------------------------------
def validated(series: Series, frame: pd.DataFrame) -> Points:
    """The whole payload validated, or MalformedPayload: nothing of a bad payload is stored."""
    try:
        return ingest.validate(frame, series.kind, series_services.series_timezone(series))
    except ingest.BatchInvalid as exc:
        errors = exc.details.get("errors", [])
        first = f" (row {errors[0]['row']}, {errors[0]['column']}: {errors[0]['reason']})" if errors else ""
        raise MalformedPayload(f"The provider sent malformed data; nothing of it was stored{first}.",
                               details=exc.details) from None


def _subset(points: Points, keep: np.ndarray) -> Points:
    return Points(points.kind, points.ts[keep], {c: v[keep] for c, v in points.values.items()},
                  None if points.trade_id is None else points.trade_id[keep])


def _content_key(series: Series, points: Points) -> str:
    digest = hashlib.sha256(points.ts.tobytes())
    for name in sorted(points.values):
        digest.update(np.ascontiguousarray(points.values[name]).tobytes())
    if points.trade_id is not None:
        digest.update("\x00".join("" if t is None else t for t in points.trade_id).encode())
    return f"provider:{series.pk}:{digest.hexdigest()}"


def regular_session(series: Series, points: Points) -> Points:
    """What a provider sent, less its off-session points.

    Alpha Vantage (by default) and Polygon serve extended hours, 04:00-20:00 ET. The project imports
    the exchange's regular session only: rules, detectors, rollups and gap detection then all see
    the one session the exchange calendar defines, and thin pre-market prints raise no false alarms.
    Series without an exchange (metrics, crypto) keep every point. Uploads are stored as sent."""
    if not series.exchange or not len(points):
        return points
    keep = calendars.in_session(series.exchange, points.ts)
    return points if keep.all() else _subset(points, keep)


def store(*, actor: Actor, series: Series, points: Points) -> int:
    """One atomic ingest keyed by content: the same answer stored twice is stored once. Only the
    regular session is kept (regular_session).

    No partition cap: a provider's full daily history (Alpha Vantage: 20+ years of bars) is one
    answer, and its times still lie in the series' accepted range (watchlists.timerange)."""
    points = regular_session(series, points)
    if not len(points):
        return 0
    (result,) = series_services.ingest(actor=actor, batches=[(series, points)],
                                       idempotency_key=_content_key(series, points), max_rows=None,
                                       max_new_partitions=None)
    return result.stored


@dataclass
class ImportResult:
    received: int = 0
    stored: int = 0


def import_range(*, actor: Actor, link: SeriesProvider, start: date, end: date, provider: Provider | None = None,
                 latest: bool = False) -> ImportResult:
    """Fetches exchange-local days start..end and stores them atomically; errors go on the link."""
    actor.require("ingest")
    provider = provider or build_provider(organization_id=link.organization_id, provider=link.provider)
    target = target_for(link)
    try:
        frame = provider.fetch_latest_day(target, start) if latest else provider.fetch_history(target, start, end)
        points = validated(link.series, frame)
        stored = store(actor=actor, series=link.series, points=points)
    except ProviderError as exc:
        record_error(link, exc.message)
        raise
    clear_error(link)
    return ImportResult(len(points), stored)


# --- the daily import ----------------------------------------------------------------------------
def import_session(*, actor: Actor, link: SeriesProvider, session: date, provider: Provider | None = None) -> ImportResult:
    """The daily import of one closed session. Safe to run twice or late: a session already
    imported is skipped, and points are idempotent on (series, ts) anyway."""
    link.refresh_from_db(fields=["last_session", "last_error"])
    if link.last_session is not None and link.last_session >= session:
        return ImportResult()
    result = import_range(actor=actor, link=link, start=session, end=session, provider=provider, latest=True)
    if result.received == 0:
        # The provider has not published the session yet: leave it due, the next run retries.
        message = f"No data for the session of {session} yet; will retry on the next run."
        record_error(link, message)
        raise ProviderError(message)
    SeriesProvider.objects.filter(pk=link.pk).exclude(last_session__gte=session).update(
        last_session=session, last_import_at=timezone.now())
    return result


def due_imports(*, now: datetime) -> list[tuple[SeriesProvider, list[date]]]:
    """Every enabled link with closed sessions not imported yet (none on weekends and holidays)."""
    out = []
    links = SeriesProvider.objects.filter(enabled=True).exclude(provider=ProviderName.REPLAY).select_related("series")
    for link in links:
        if link.series.exchange:
            sessions = schedule.due_sessions(link.series.exchange, now, link.last_session)
            if sessions:
                out.append((link, sessions))
    return out


# --- gaps ----------------------------------------------------------------------------------------
@dataclass
class GapReport:
    sessions_checked: int = 0
    missing: int = 0
    filled: int = 0
    holes: list[tuple[str, str]] = field(default_factory=list)  # (first missing, last missing), ISO UTC


def find_gaps(*, link: SeriesProvider, sessions: list[date]) -> dict[date, np.ndarray]:
    """Regular-session bar times (µs UTC) with no stored bar, per session."""
    series = link.series
    if series.kind != "bar" or not series.bar_seconds or not series.exchange:
        return {}
    out = {}
    for session in sessions:
        expected = schedule.expected_bar_times(series.exchange, session, series.bar_seconds)
        if not len(expected):
            continue
        stored = reader.read_raw(series.pk, "bar", int(expected[0]), int(expected[-1]) + 1)["ts"]
        step = series.bar_seconds * US
        missing = np.setdiff1d(expected, (stored // step) * step, assume_unique=False)
        if len(missing):
            out[session] = missing
    return out


def _holes(missing: np.ndarray, step: int) -> list[tuple[str, str]]:
    breaks = np.flatnonzero(np.diff(missing) != step)
    starts = np.r_[0, breaks + 1]
    ends = np.r_[breaks, len(missing) - 1]
    return [(from_us(int(missing[a])).isoformat(), from_us(int(missing[b])).isoformat()) for a, b in zip(starts, ends, strict=True)]


def fill_gaps(*, actor: Actor, link: SeriesProvider, now: datetime | None = None, days: int = GAP_DAYS,
              provider: Provider | None = None) -> GapReport:
    """Finds holes in the last `days` closed sessions and refetches just those bars."""
    actor.require("ingest")
    series = link.series
    report = GapReport()
    if not series.exchange:
        return report
    sessions = schedule.recent_sessions(series.exchange, now or timezone.now(), days)
    report.sessions_checked = len(sessions)
    gaps = find_gaps(link=link, sessions=sessions)
    if not gaps:
        return report
    provider = provider or build_provider(organization_id=link.organization_id, provider=link.provider)
    target, step = target_for(link), series.bar_seconds * US
    for session, missing in gaps.items():
        report.missing += len(missing)
        report.holes.extend(_holes(missing, step))
        try:
            points = validated(series, provider.fetch_history(target, session, session))
            keep = np.isin((points.ts // step) * step, missing)
            store(actor=actor, series=series, points=_subset(points, keep))
        except ProviderError as exc:
            record_error(link, f"Gap fill for {session}: {exc.message}")
            raise
        report.filled += len(missing) - len(find_gaps(link=link, sessions=[session]).get(session, ()))
    return report


# --- backfills -----------------------------------------------------------------------------------
def _check_range(start: date, end: date) -> None:
    if end < start:
        raise InvalidError("The end is before the start.", details={"end": ["Must be on or after start."]})
    if (end - start).days > MAX_BACKFILL_DAYS:
        raise InvalidError(f"Backfill at most {MAX_BACKFILL_DAYS} days at a time.", details={"start": ["Range too long."]})


def get_backfill(*, actor: Actor, series: Series, start: date, end: date, provider: str | None = None) -> Backfill:
    """The backfill of this exact range, created on first request: asking again resumes it."""
    actor.require("ingest")
    _check_range(start, end)
    link = SeriesProvider.objects.filter(series=series).first()
    name = provider or (link.provider if link else None)
    if name is None:
        raise InvalidError("The series has no provider; connect one or name it.", details={"provider": ["Required."]})
    if link is None:
        link = connect_series(actor=actor, series=series, provider=name)
    backfill, _ = Backfill.objects.get_or_create(organization_id=series.organization_id, series=series, provider=name,
                                                 start=start, end=end)
    return backfill


def request_backfill(*, actor: Actor, series: Series, start: date, end: date, provider: str | None = None) -> Backfill:
    backfill = get_backfill(actor=actor, series=series, start=start, end=end, provider=provider)
    if backfill.status != Backfill.Status.DONE:
        from .tasks import run_backfill

        transaction.on_commit(lambda: run_backfill.delay(backfill.pk, backfill.organization_id))
    return backfill


def run_backfill(*, actor: Actor, backfill: Backfill, provider: Provider | None = None, progress=None) -> Backfill:
    """Works through the backfill chunk by chunk from its cursor. Each chunk is one atomic
    ingest and moves `done_until`, so an interrupted backfill resumes where it stopped."""
    actor.require("ingest")
    series = backfill.series
    link = SeriesProvider.objects.select_related("series").filter(series=series).first()
    provider = provider or build_provider(organization_id=backfill.organization_id, provider=backfill.provider)
    target = target_for(link) if link else Target(symbol=series.symbol, kind=series.kind, bar_seconds=series.bar_seconds,
                                                  tz=series_services.series_timezone(series))
    start = backfill.done_until + timedelta(days=1) if backfill.done_until else backfill.start
    Backfill.objects.filter(pk=backfill.pk).update(status=Backfill.Status.RUNNING, error="")
    try:
        for first, last in provider.chunks(start, backfill.end) if start <= backfill.end else []:
            stored = 0
            if not series.exchange or schedule.sessions_between(series.exchange, first, last):
                stored = store(actor=actor, series=series, points=validated(series, provider.fetch_history(target, first, last)))
            Backfill.objects.filter(pk=backfill.pk).update(done_until=last, rows_stored=F("rows_stored") + stored)
            if progress:
                progress(first, last, stored)
    except ProviderError as exc:
        Backfill.objects.filter(pk=backfill.pk).update(status=Backfill.Status.FAILED, error=exc.message[:2000])
        if link:
            record_error(link, f"Backfill {backfill.start}..{backfill.end}: {exc.message}")
        backfill.refresh_from_db()
        raise
    Backfill.objects.filter(pk=backfill.pk).update(status=Backfill.Status.DONE)
    if link:
        clear_error(link)
    backfill.refresh_from_db()
    return backfill


def backfill_chunks_left(backfill: Backfill, provider_name: str | None = None) -> int:
    start = backfill.done_until + timedelta(days=1) if backfill.done_until else backfill.start
    chunking = provider_class(provider_name or backfill.provider).chunking
    return len(split(chunking, start, backfill.end)) if start <= backfill.end else 0


# --- live streams --------------------------------------------------------------------------------
def store_events(*, organization_id: int, links: dict[str, SeriesProvider], provider: Provider, events: list[dict]) -> int:
    """Stores one batch of stream events; a malformed message is reported on its series and dropped."""
    actor = system_actor(organization_id)
    stored = 0
    for (symbol, kind), frame in provider.events_to_frames(events).items():
        link = links.get(symbol)
        if link is None or (kind is not None and kind != link.series.kind):
            continue
        try:
            stored += store(actor=actor, series=link.series, points=validated(link.series, frame))
        except ProviderError as exc:
            record_error(link, f"Live stream: {exc.message}")
    return stored


def fill_after_reconnect(*, organization_id: int, links: dict[str, SeriesProvider], provider: Provider,
                         now: datetime) -> int:
    """After (re)connecting: every complete bar, or every trade, since the last stored one (at most
    GAP_DAYS back), through REST."""
    actor = system_actor(organization_id)
    stored = 0
    for link in links.values():
        series = Series.objects.get(pk=link.series_id)
        if series.last_point_at is None:
            continue
        last_ms = to_us(series.last_point_at) // 1000
        if series.kind == "bar" and series.bar_seconds:
            step_ms = series.bar_seconds * 1000
            end_ms = (to_us(now) // 1000 // step_ms) * step_ms  # complete bars only; the stream brings the rest
            start_ms = last_ms + step_ms
        elif series.kind == "trade":
            # From the last stored tick's millisecond on: trades sharing it are absorbed by their ids.
            start_ms, end_ms = last_ms, to_us(now) // 1000
        else:
            continue
        # Older holes are the daily gap job's (and backfill's) business, not a reconnect's.
        start_ms = max(start_ms, end_ms - GAP_DAYS * 86_400_000)
        if end_ms <= start_ms:
            continue
        try:
            stored += store(actor=actor, series=series,
                            points=validated(series, provider.fetch_between(target_for(link), start_ms, end_ms)))
        except ProviderError as exc:
            record_error(link, f"Gap fill after reconnect: {exc.message}")
    return stored


async def run_stream(*, organization_id: int, provider: str = ProviderName.POLYGON, stop, now=timezone.now,
                     client: Provider | None = None, **stream_options) -> None:
    """Streams every enabled link of the organization on `provider` until `stop` is set."""
    from asgiref.sync import sync_to_async

    def load():
        qs = SeriesProvider.objects.filter(organization_id=organization_id, provider=provider, enabled=True)
        return {link.symbol: link for link in qs.select_related("series")}

    links = await sync_to_async(load)()
    if client is None:
        client = await sync_to_async(build_provider)(organization_id=organization_id, provider=provider)
    targets = [target_for(link) for link in links.values()]
    save = sync_to_async(store_events)
    fill = sync_to_async(fill_after_reconnect)

    async def on_events(events):
        await save(organization_id=organization_id, links=links, provider=client, events=events)

    async def on_reconnect():
        await fill(organization_id=organization_id, links=links, provider=client, now=now())

    await client.stream(targets, on_events, stop=stop, on_reconnect=on_reconnect, **stream_options)


def serve_stream(*, organization_id: int, provider: str = ProviderName.POLYGON) -> None:
    """Blocking entry point for a long-running stream process (one per organization and provider,
    under a supervisor); SIGTERM/SIGINT stop it cleanly between frames."""
    import asyncio
    import signal

    from asgiref.sync import sync_to_async
    from django.db import connections

    async def main():
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await run_stream(organization_id=organization_id, provider=provider, stop=stop)
        finally:
            # The database work ran on asgiref's worker thread: close its connection, not leak it.
            await sync_to_async(connections.close_all)()

    asyncio.run(main())
