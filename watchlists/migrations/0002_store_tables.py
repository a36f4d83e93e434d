"""The time-series store's tables (raw SQL: partitioned on PostgreSQL, plain on SQLite)."""

from django.db import migrations


def create(apps, schema_editor):
    from watchlists.store.schema import create_tables

    create_tables(schema_editor)


def drop(apps, schema_editor):
    from watchlists.store.schema import drop_tables

    drop_tables(schema_editor)


class Migration(migrations.Migration):
    dependencies = [("watchlists", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
