from django.apps import AppConfig


class DetectionConfig(AppConfig):
    name = "detection"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from watchlists.signals import batch_stored

        from .tasks import enqueue

        def on_batch_stored(sender, organization_id, spans, **kwargs):
            enqueue(organization_id)

        batch_stored.connect(on_batch_stored, dispatch_uid="detection.on_batch_stored", weak=False)

        from watchlists.signals import history_imported

        def on_history_imported(sender, organization_id, series_id, start_us, end_us, **kwargs):
            from .services.history import request_for_import

            request_for_import(organization_id, series_id, start_us, end_us)

        history_imported.connect(on_history_imported, dispatch_uid="detection.history_imported", weak=False)

        from .live import publish_anomalies
        from .signals import anomalies_detected

        def on_anomalies(sender, organization_id, series_id, anomaly_keys, created=None, **kwargs):
            # The pipeline (which passes `created`) has already published its rows in one go.
            if created is None:
                publish_anomalies(organization_id, series_id, anomaly_keys)

        anomalies_detected.connect(on_anomalies, dispatch_uid="detection.live", weak=False)
