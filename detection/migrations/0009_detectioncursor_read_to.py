from datetime import UTC, datetime, timedelta

from django.db import migrations, models

RANK_BITS = 1024  # detection.pipeline.messages, frozen here
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def fill_read_to(apps, schema_editor):
    """The time of each cursor's last message, so the sweep does not take every series as behind."""
    cursor_model = apps.get_model("detection", "DetectionCursor")
    batch = []
    for cursor in cursor_model.objects.filter(last_msg_id__gte=0).only("pk", "last_msg_id").iterator(chunk_size=5000):
        cursor.read_to = EPOCH + timedelta(microseconds=cursor.last_msg_id // RANK_BITS)
        batch.append(cursor)
        if len(batch) >= 5000:
            cursor_model.objects.bulk_update(batch, ["read_to"])
            batch = []
    cursor_model.objects.bulk_update(batch, ["read_to"])


class Migration(migrations.Migration):
    dependencies = [("detection", "0008_trainingrun_reason")]

    operations = [
        migrations.AddField(model_name="detectioncursor", name="read_to",
                            field=models.DateTimeField(blank=True, null=True)),
        migrations.RunPython(fill_read_to, migrations.RunPython.noop),
    ]
