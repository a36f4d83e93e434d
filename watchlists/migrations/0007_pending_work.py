"""One durable queue for work a batch leaves (PendingWork): StoredSpan becomes PendingWork with a
purpose (its rows were detection's), and RollupBacklog's rows move into it as purpose "rollups"."""

import django.utils.timezone
from django.db import migrations, models


def backlog_to_pending(apps, schema_editor):
    backlog = apps.get_model("watchlists", "RollupBacklog")
    pending = apps.get_model("watchlists", "PendingWork")
    pending.objects.bulk_create([
        pending(purpose="rollups", organization_id=row.organization_id, series_id=row.series_id,
                start_us=row.start_us, end_us=row.end_us) for row in backlog.objects.all()], batch_size=1000)


def pending_to_backlog(apps, schema_editor):
    backlog = apps.get_model("watchlists", "RollupBacklog")
    pending = apps.get_model("watchlists", "PendingWork")
    spans = {}
    for row in pending.objects.filter(purpose="rollups"):
        lo, hi = spans.get(row.series_id, (row.start_us, row.end_us))[:2]
        spans[row.series_id] = (min(lo, row.start_us), max(hi, row.end_us), row.organization_id)
    backlog.objects.bulk_create([backlog(series_id=series_id, start_us=lo, end_us=hi, organization_id=org)
                                 for series_id, (lo, hi, org) in spans.items()])
    pending.objects.filter(purpose="rollups").delete()


class Migration(migrations.Migration):

    dependencies = [
        ('watchlists', '0006_series_history_from'),
    ]

    operations = [
        migrations.RenameModel('StoredSpan', 'PendingWork'),
        migrations.RemoveIndex(model_name='pendingwork', name='storedspan_series'),
        migrations.AddField(
            model_name='pendingwork',
            name='purpose',
            field=models.CharField(choices=[('rollups', 'Rollups'), ('detect', 'Detect')], default='detect',
                                   max_length=8),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name='pendingwork',
            name='created_at',
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.AddIndex(
            model_name='pendingwork',
            index=models.Index(fields=['purpose', 'organization', 'series'], name='pendingwork_claim'),
        ),
        migrations.RunPython(backlog_to_pending, pending_to_backlog),
        migrations.DeleteModel(name='RollupBacklog'),
    ]
