from django.apps import AppConfig


class DetectionConfig(AppConfig):
    name = "detection"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from watchlists.signals import points_stored

        from .tasks import enqueue_series

        def on_points_stored(sender, organization_id, series_id, **kwargs):
            enqueue_series(series_id, organization_id)

        points_stored.connect(on_points_stored, dispatch_uid="detection.on_points_stored", weak=False)

        from .live import publish_anomalies
        from .signals import anomalies_detected

        def on_anomalies(sender, organization_id, series_id, anomaly_keys, **kwargs):
            publish_anomalies(organization_id, series_id, anomaly_keys)

        anomalies_detected.connect(on_anomalies, dispatch_uid="detection.live", weak=False)
