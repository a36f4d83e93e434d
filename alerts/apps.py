from django.apps import AppConfig


class AlertsConfig(AppConfig):
    name = "alerts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Importing connects them: lifecycle blanks a deleted user's address in the delivery log.
        from . import lifecycle, receivers  # noqa: F401
