"""Series, watchlists and ingest. Keyword-only, actor first; each service checks its own rights."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from accounts.tenancy import Actor
from anomalyhub.lib.errors import InvalidError
from anomalyhub.lib.localcache import TTLCache

from . import calendars, live, metrics, pending, timerange
from .exceptions import BatchTooLarge, SeriesConflict, UnknownSymbol
from .models import IngestBatch, Series, SeriesKind, Watchlist, WatchlistItem
from .signals import batch_stored, history_imported
from .store import reader
from .store.partitions import create_partitions, missing_partitions
from .store.rollups import RESOLUTIONS
from .store.schema import RAW_TABLES
from .store.timeconv import from_us
from .store.writer import VALUE_COLUMNS, Points, write_many

logger = logging.getLogger(__name__)


def max_batch_rows() -> int:
    return getattr(settings, "INGEST_MAX_BATCH_ROWS", 100_000)


def series_timezone(series: Series) -> str:
    return calendars.timezone_of(series.exchange) if series.exchange else "UTC"


def _check_series_fields(kind: str, exchange: str) -> None:
    if kind not in SeriesKind.values:
        raise InvalidError(f"Unknown kind '{kind}'.", details={"kind": [f"Choose one of {SeriesKind.values}."]})
    if exchange and not calendars.valid_exchange(exchange):
        raise InvalidError(f"Unknown exchange calendar '{exchange}'.",
                           details={"exchange": ["Use an exchange_calendars code such as XNYS, XNAS or XLON."]})


def create_series(*, actor: Actor, symbol: str, kind: str = SeriesKind.BAR, exchange: str = "",
                  name: str = "", bar_seconds: int | None = None, history_from=None) -> Series:
    """Creates a series in the actor's organization; symbols are unique per organization."""
    actor.require("change")
    history_from = timerange.check_history_from(history_from)
    symbol = (symbol or "").strip()
    if not symbol:
        raise InvalidError("A series needs a symbol.", details={"symbol": ["This field is required."]})
    exchange = (exchange or "").strip().upper()
    _check_series_fields(kind, exchange)
    try:
        with transaction.atomic():
            return Series.objects.create(organization_id=actor.organization_id, symbol=symbol, kind=kind,
                                         exchange=exchange, name=name, bar_seconds=bar_seconds,
                                         history_from=history_from)
    except IntegrityError:
        raise SeriesConflict(f"A series with symbol '{symbol}' already exists.") from None


def update_series(*, actor: Actor, series: Series, **fields) -> Series:
    actor.require("change")
    if "kind" in fields and fields["kind"] != series.kind and series.last_point_at is not None:
        raise InvalidError("The kind of a series with stored points cannot change; create a new series.",
                           details={"kind": ["Series already has points."]})
    if "history_from" in fields:
        fields["history_from"] = timerange.check_history_from(fields["history_from"])
    for name, value in fields.items():
        setattr(series, name, value.strip().upper() if name == "exchange" else value)
    _check_series_fields(series.kind, series.exchange)
    try:
        with transaction.atomic():
            series.save()
    except IntegrityError:
        raise SeriesConflict(f"A series with symbol '{series.symbol}' already exists.") from None
    return series


def delete_series(*, actor: Actor, series: Series) -> None:
    """Deletes a series and its stored points (raw, rollups, features)."""
    actor.require("change")
    from django.db import connection

    with transaction.atomic(), connection.cursor() as cursor:
        for table in (*RAW_TABLES.values(), "watchlists_rollup", "watchlists_feature"):
            cursor.execute(f"DELETE FROM {table} WHERE series_id = %s", [series.pk])
        series.delete()


def _scoped_series(actor: Actor, series_ids) -> list[Series]:
    ids = list(dict.fromkeys(series_ids))
    found = {s.pk: s for s in Series.objects.for_actor(actor, "view").filter(pk__in=ids)}
    missing = [i for i in ids if i not in found]
    if missing:
        raise InvalidError("Unknown series.", details={"series": [f"No series with id {i}." for i in missing]})
    return [found[i] for i in ids]


@transaction.atomic
def save_watchlist(*, actor: Actor, watchlist: Watchlist | None = None, name: str | None = None,
                   description: str | None = None, series_ids=None) -> Watchlist:
    """Creates (watchlist=None) or updates a watchlist; series_ids replaces its series."""
    actor.require("change")
    if watchlist is None:
        watchlist = Watchlist(organization_id=actor.organization_id)
    if name is not None:
        watchlist.name = name.strip()
    if description is not None:
        watchlist.description = description
    if not watchlist.name:
        raise InvalidError("A watchlist needs a name.", details={"name": ["This field is required."]})
    try:
        with transaction.atomic():
            watchlist.save()
    except IntegrityError:
        raise SeriesConflict(f"A watchlist named '{watchlist.name}' already exists.") from None
    if series_ids is not None:
        series = _scoped_series(actor, series_ids)
        removed, _ = WatchlistItem.objects.filter(watchlist=watchlist).exclude(series__in=series).delete()
        existing = set(WatchlistItem.objects.filter(watchlist=watchlist).values_list("series_id", flat=True))
        added = WatchlistItem.objects.bulk_create([
            WatchlistItem(organization_id=actor.organization_id, watchlist=watchlist, series=s)
            for s in series if s.pk not in existing])
        if removed or added:
            live.publish_watchlist_changed(watchlist.pk)
    return watchlist


@receiver(post_delete, sender=Watchlist, dispatch_uid="watchlists.live.watchlist_deleted")
def _watchlist_deleted(sender, instance: Watchlist, **kwargs) -> None:
    live.publish_watchlist_changed(instance.pk)  # from any path (API, GraphQL, pages, a deleted organization)


# Every ingest request names its series by symbol. The (organization, symbol) -> series lookups
# of this process are remembered for SERIES_CACHE_SECONDS: the query was ~2 ms of a 100-tick
# POST, in front of detection. Saving or deleting a series drops its organization's entries here
# (the receiver below); in other processes an entry may outlive a change by that time, so a stored
# batch checks its series under lock (_advance_last_points) and stores nothing if one changed.
_SERIES = TTLCache("SERIES_CACHE_SECONDS", 5)


def series_by_symbol(*, actor: Actor, symbols) -> dict[str, Series]:
    scoped = Series.objects.for_actor(actor, "view")
    if scoped.query.is_empty():  # the actor may not read this organization's series
        found = {}
    else:
        org = actor.organization_id
        found = {s: copy.copy(hit) for s in symbols if (hit := _SERIES.get((org, s))) is not None}
        # No stored symbol holds a NUL (serializers refuse it), and PostgreSQL rejects one even in
        # a WHERE clause; such a symbol is simply unknown.
        wanted = [s for s in symbols if s not in found and "\x00" not in s]
        if wanted:
            for series in scoped.filter(symbol__in=wanted):
                _SERIES.put((org, series.symbol), copy.copy(series))
                found[series.symbol] = series
    unknown = [s for s in symbols if s not in found]
    if unknown:
        raise UnknownSymbol(f"Unknown symbol(s): {', '.join(unknown[:20])}. Create the series first.",
                            details={"errors": [{"row": 0, "column": "symbol", "reason": f"unknown symbol '{s}'"}
                                                for s in unknown[:100]], "total_errors": len(unknown)})
    return found


@receiver([post_save, post_delete], sender=Series)
def _forget_series(sender, instance: Series, **kwargs) -> None:
    _forget_organizations_series(instance.organization_id)


def _forget_organizations_series(organization_id: int) -> None:
    # By organization: a renamed series' old symbol must go too, and changes are rare.
    _SERIES.forget(lambda key, _: key[0] == organization_id)


@dataclass
class IngestResult:
    series_id: int
    received: int
    stored: int
    duplicate: bool = False
    first_ts: str | None = None
    last_ts: str | None = None

    def as_dict(self) -> dict:
        return dict(vars(self))  # flat fields: dataclasses.asdict's deep copy cost ~0.2 ms a series


def ingest(*, actor: Actor, batches: list[tuple[Series, Points]], idempotency_key: str | None = None,
           max_rows: int | None = -1, max_new_partitions: int | None = -1) -> list[IngestResult]:
    """Stores validated batches for one or more series atomically: all or nothing.

    Idempotent by `idempotency_key` (per organization): a key seen before stores nothing and
    answers duplicate=True. Bars and metrics are also idempotent by (series, ts) on their own.
    Detection is notified (batch_stored) after commit. max_rows: -1 = the request limit
    (INGEST_MAX_BATCH_ROWS), None = no limit (bulk imports chunk by themselves). max_new_partitions:
    -1 = INGEST_MAX_NEW_PARTITIONS, None = no limit (the operator's import_csv)."""
    actor.require("ingest")
    limit = max_batch_rows() if max_rows == -1 else max_rows
    total = sum(len(p) for _, p in batches)
    if limit is not None and total > limit:
        raise BatchTooLarge(f"The batch has {total} points; the limit is {limit} per request. "
                            "Split it into smaller batches.", details={"limit_rows": limit})
    for series, points in batches:
        if series.organization_id != actor.organization_id:  # defensive: callers pass scoped series
            raise UnknownSymbol("Unknown series.")
        if points.kind != series.kind:
            raise InvalidError(f"Series {series.symbol} holds {series.kind} points, not {points.kind}.")
        timerange.check_times(series, points)
    if idempotency_key and IngestBatch.objects.filter(organization_id=actor.organization_id,
                                                      key=idempotency_key).exists():
        metrics.BATCHES.labels("duplicate").inc()
        return [IngestResult(s.pk, len(p), 0, duplicate=True) for s, p in batches]
    _prepare_partitions(batches, new_partitions_limit() if max_new_partitions == -1 else max_new_partitions)
    try:
        with metrics.INGEST_SECONDS.time():
            results = _store(actor, batches, idempotency_key)
    except IntegrityError:
        if idempotency_key:  # a concurrent request with the same key won the race
            metrics.BATCHES.labels("duplicate").inc()
            return [IngestResult(s.pk, len(p), 0, duplicate=True) for s, p in batches]
        raise
    metrics.BATCHES.labels("stored").inc()
    for (series, _), result in zip(batches, results, strict=True):
        metrics.POINTS_INGESTED.labels(series.kind).inc(result.received)
    return results


def new_partitions_limit() -> int:
    return getattr(settings, "INGEST_MAX_NEW_PARTITIONS", 24)


def _prepare_partitions(batches, limit: int | None) -> None:
    """Creates the partitions the batches need, outside the write's transaction and one by one
    (store.partitions), or refuses the batch when that is more than INGEST_MAX_NEW_PARTITIONS."""
    plan: dict[str, dict[str, tuple]] = {}
    for series, points in batches:
        if len(points):
            table = RAW_TABLES[series.kind]
            for part in missing_partitions(table, from_us(points.ts.min()), from_us(points.ts.max())):
                plan.setdefault(table, {})[part[0]] = part
    new = sum(map(len, plan.values()))
    if limit is not None and new > limit:
        raise InvalidError(f"The batch spans {new} months or years the store has no partition for yet; one batch "
                           f"may open at most {limit}. Send older history in batches covering shorter spans.",
                           details={"new_partitions": new, "limit": limit}, code="too_many_partitions")
    for table, parts in plan.items():
        create_partitions(table, list(parts.values()))


@transaction.atomic
def _store(actor: Actor, batches, idempotency_key) -> list[IngestResult]:
    if idempotency_key:
        IngestBatch.objects.create(organization_id=actor.organization_id, key=idempotency_key,
                                   series=batches[0][0] if len(batches) == 1 else None,
                                   rows=sum(len(p) for _, p in batches))
    results, announced = [], []
    stored_counts = write_many(actor.organization_id, [(series.pk, points) for series, points in batches])
    for (series, points), stored in zip(batches, stored_counts, strict=True):
        if not len(points):
            results.append(IngestResult(series.pk, 0, 0))
            continue
        first, last = int(points.ts.min()), int(points.ts.max())
        last_dt = from_us(last)
        results.append(IngestResult(series.pk, len(points), stored, first_ts=from_us(first).isoformat(),
                                    last_ts=last_dt.isoformat()))
        announced.append((series, points, first, last))
    if announced:
        _advance_last_points(actor.organization_id, announced)
        transaction.on_commit(_announce(actor.organization_id, announced))
    return results


def _advance_last_points(organization_id: int, announced) -> None:
    """Moves every series' last_point_at forward (two statements per batch, not per series); in id
    order, so concurrent batches lock the rows in the same order. Then, in the
    same transaction, each series' span is queued for the rollups and for detection
    (watchlists.pending): the work exists exactly when the points do, whatever becomes of the
    wake-up, and detection learns of points committed behind ones it has already streamed.

    The row locks also check that every series is still what its points were parsed and named for
    (symbol, kind, exchange: its time zone): a series looked up from a cache (series_by_symbol)
    may have been deleted, renamed or changed in another process. Then nothing is stored and the
    caller is told."""
    spans = _spans(announced)
    series_by_id = {series.pk: series for series, *_ in announced}
    rows = [(pk, from_us(spans[pk][1]), s.kind, s.symbol, s.exchange) for pk, s in sorted(series_by_id.items())]
    # Lock the rows that still match (id order: no deadlock between concurrent batches), then move
    # each forward from its locked value: two statements per batch on either engine.
    match = Q()
    for pk, _, kind, symbol, exchange in rows:
        match |= Q(pk=pk, kind=kind, symbol=symbol, exchange=exchange)
    current = dict(Series.objects.filter(match, organization_id=organization_id).order_by("pk")
                   .select_for_update(of=("self",)).values_list("pk", "last_point_at"))
    found = set(current)
    Series.objects.bulk_update([Series(pk=pk, last_point_at=_later(current[pk], last_dt))
                                for pk, last_dt, *_ in rows if pk in found], ["last_point_at"])
    gone = sorted({series.symbol for series, *_ in announced if series.pk not in found})
    if gone:
        _forget_organizations_series(organization_id)
        raise UnknownSymbol(f"Series {', '.join(gone[:20])} changed while the batch was stored (deleted, renamed, "
                            "or a new kind or exchange): nothing was stored. Check the series and send the batch "
                            "again.", details={"symbols": gone[:100]})
    pending.add(organization_id, spans)


def _later(current, candidate):
    return candidate if current is None or candidate > current else current


def _announce(organization_id: int, stored: list[tuple[Series, Points, int, int]]):
    """After commit, once for the whole batch: detection first (the anomaly path is the latency
    that matters), then live subscribers (one Redis round trip for every series), then rollups
    (coalesced per series). Per series this used to be ~4 round trips; now it is ~4 per batch.

    The batch is committed by now: a broker outage (Redis down or restarting) is logged, never
    raised. A 500 for stored points would invite a resend, and a resend without an
    Idempotency-Key stores the ticks twice. Detection that could not be queued is picked up by
    the detection sweep (series whose points are ahead of their cursor); rollups by the rollup
    sweep, from the work queued with the points (watchlists.pending, _advance_last_points)."""
    def send():
        from .tasks import enqueue_rollups

        spans = _spans(stored)
        _robustly(batch_stored, organization_id=organization_id, spans=spans)
        live.publish_points_many([(series.pk, points) for series, points, _, _ in stored])
        try:
            enqueue_rollups(organization_id)
        except Exception:  # noqa: BLE001 — see above; the work is queued in PostgreSQL with the points
            logger.exception("rollups not queued for stored series %s: the rollup sweep will build them",
                             sorted(spans))
    return send


def announce_import(series: Series, first_us: int, last_us: int) -> None:
    """Tells detection that an import stored points over [first, last] (see signals)."""
    _robustly(history_imported, organization_id=series.organization_id, series_id=series.pk, start_us=first_us,
              end_us=last_us)


def _spans(stored) -> dict[int, tuple[int, int]]:
    """{series id: (first µs, last µs)} of a request's batches (a series may come in several)."""
    spans: dict[int, tuple[int, int]] = {}
    for series, _, first, last in stored:
        lo, hi = spans.get(series.pk, (first, last))
        spans[series.pk] = (min(lo, first), max(hi, last))
    return spans


def _robustly(signal, **kwargs) -> None:
    for handler, result in signal.send_robust(sender=Series, **kwargs):
        if isinstance(result, Exception):
            logger.error("%s failed after a committed batch (organization %s)", handler, kwargs["organization_id"],
                         exc_info=result)


def read_points(series: Series, resolution: str, start_us: int, end_us: int, limit: int):
    """(data, columns) for a resolution; raw bars are served when they are already that coarse."""
    seconds = RESOLUTIONS.get(resolution)
    raw_is_enough = series.kind == "bar" and series.bar_seconds and seconds and seconds <= series.bar_seconds
    if resolution == "raw" or raw_is_enough:
        columns = list(VALUE_COLUMNS[series.kind])
        return reader.read_raw(series.pk, series.kind, start_us, end_us, limit + 1), columns
    columns = list(reader.ROLLUP_COLUMNS)
    return reader.read_rollup(series.pk, seconds, start_us, end_us, limit + 1), columns
