from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import audit, lifecycle  # noqa: F401  (audit receivers; anonymising a deleted user's events)
        from .api import schema  # noqa: F401  (registers the OpenAPI auth extension)
