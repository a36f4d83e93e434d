"""What deleting a series or an organization means for the time-series store.

The store's tables (watchlists/store/schema.py) are not Django models, so no cascade reaches them:
these receivers delete their rows inside the same transaction as the Django delete, whichever way
it happens (REST, GraphQL, the admin, or an organization's cascade). See docs/data-lifecycle.md.
"""

from __future__ import annotations

from django.db import connection
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from accounts.models import Organization

from .models import Series
from .store.schema import FEATURE_TABLE, RAW_TABLES, ROLLUP_TABLE

STORE_TABLES = (*RAW_TABLES.values(), ROLLUP_TABLE, FEATURE_TABLE)


def delete_store_rows(*, organization_id: int | None = None, series_id: int | None = None) -> int:
    """Deletes the points, rollups and features of one series or of a whole organization.
    Idempotent; returns the number of rows deleted."""
    column, value = ("series_id", series_id) if series_id is not None else ("organization_id", organization_id)
    if value is None:
        raise ValueError("give organization_id or series_id")
    deleted = 0
    with connection.cursor() as cursor:
        for table in STORE_TABLES:
            cursor.execute(f"DELETE FROM {table} WHERE {column} = %s", [value])
            deleted += max(cursor.rowcount, 0)
    return deleted


@receiver(pre_delete, sender=Organization, dispatch_uid="watchlists.lifecycle.organization")
def _organization_deleted(sender, instance, **kwargs):
    # One pass by organization_id rather than one per series: the series receiver below then
    # finds nothing left to delete.
    delete_store_rows(organization_id=instance.pk)


@receiver(pre_delete, sender=Series, dispatch_uid="watchlists.lifecycle.series")
def _series_deleted(sender, instance, **kwargs):
    delete_store_rows(series_id=instance.pk)
