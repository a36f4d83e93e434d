"""RollupBacklog: the spans of stored points whose rollups are not refreshed yet, durable in the
database; StoredSpan: every committed batch's spans, for detection. Ingest widens them in the transaction that stores the points (services), the rollup
refresh and sweep take them (tasks)."""

from django.db import connection, transaction
from django.utils import timezone

from .models import RollupBacklog, Series, StoredSpan


def backlog_statements(organization_id: int, spans: dict[int, tuple[int, int]]) -> list[tuple[str, list]]:
    """(SQL, parameters) widening each series' RollupBacklog row by its span: an upsert, so two
    writers widen one row instead of one of them failing; in series order, so they lock rows in the
    same order; only the organization's series. PostgreSQL: one statement for every series (ingest
    sends it in the query string of its series update); SQLite: one per series."""
    table, series_table = RollupBacklog._meta.db_table, Series._meta.db_table
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = sorted((series_id, lo, hi) for series_id, (lo, hi) in spans.items())
    if connection.vendor == "postgresql":
        return [(f"INSERT INTO {table} (organization_id, series_id, start_us, end_us, updated_at) "
                 f"SELECT s.organization_id, s.id, v.lo, v.hi, %s FROM unnest(%s::bigint[], %s::bigint[], "
                 f"%s::bigint[]) AS v(id, lo, hi) JOIN {series_table} s ON s.id = v.id AND s.organization_id = %s "
                 f"ORDER BY s.id ON CONFLICT (series_id) DO UPDATE SET start_us = LEAST({table}.start_us, "
                 f"excluded.start_us), end_us = GREATEST({table}.end_us, excluded.end_us), "
                 "updated_at = excluded.updated_at",
                 [now, *(list(column) for column in zip(*rows, strict=True)), organization_id])]
    return [(f"INSERT INTO {table} (organization_id, series_id, start_us, end_us, updated_at) "
             f"SELECT organization_id, id, %s, %s, %s FROM {series_table} WHERE id = %s AND organization_id = %s "
             f"ON CONFLICT (series_id) DO UPDATE SET start_us = MIN({table}.start_us, excluded.start_us), "
             f"end_us = MAX({table}.end_us, excluded.end_us), updated_at = excluded.updated_at",
             [lo, hi, now, series_id, organization_id]) for series_id, lo, hi in rows]


def span_statements(organization_id: int, spans: dict[int, tuple[int, int]]) -> list[tuple[str, list]]:
    """(SQL, parameters) appending each series' StoredSpan row for the batch: plain INSERTs, which
    no other writer or reader waits on. PostgreSQL: one statement; SQLite: one per series."""
    table, series_table = StoredSpan._meta.db_table, Series._meta.db_table
    rows = sorted((series_id, lo, hi) for series_id, (lo, hi) in spans.items())
    if connection.vendor == "postgresql":
        return [(f"INSERT INTO {table} (organization_id, series_id, start_us, end_us) SELECT s.organization_id, "
                 "s.id, v.lo, v.hi FROM unnest(%s::bigint[], %s::bigint[], %s::bigint[]) AS v(id, lo, hi) "
                 f"JOIN {series_table} s ON s.id = v.id AND s.organization_id = %s",
                 [*(list(column) for column in zip(*rows, strict=True)), organization_id])]
    return [(f"INSERT INTO {table} (organization_id, series_id, start_us, end_us) "
             f"SELECT organization_id, id, %s, %s FROM {series_table} WHERE id = %s AND organization_id = %s",
             [lo, hi, series_id, organization_id]) for series_id, lo, hi in rows]


def take_backlog(organization_id: int, series_ids) -> dict[int, tuple[int, int]]:
    """Deletes and returns the series' RollupBacklog spans, for a refresh about to recompute them.
    Committed at once, not held while the refresh runs: every batch of the series widens its row,
    and would wait behind the refresh. A refresh that then fails hands them back (hand_back)."""
    with transaction.atomic():
        rows = list(RollupBacklog.objects.select_for_update().filter(
            organization_id=organization_id, series_id__in=list(series_ids)).order_by("series_id")
            .values_list("pk", "series_id", "start_us", "end_us"))
        if rows:
            RollupBacklog.objects.filter(pk__in=[pk for pk, *_ in rows]).delete()
    return {series_id: (lo, hi) for _, series_id, lo, hi in rows}


def widened(spans: dict[int, tuple[int, int]], more: dict[int, tuple[int, int]]) -> dict[int, tuple[int, int]]:
    """The two span maps merged: each series' span widened to cover both."""
    merged = dict(spans)
    for series_id, (lo, hi) in more.items():
        old = merged.get(series_id)
        merged[series_id] = (min(lo, old[0]), max(hi, old[1])) if old else (lo, hi)
    return merged
