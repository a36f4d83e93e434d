from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        # Receivers: audit events; anonymising a deleted user's events; closing sockets whose access ended.
        from . import audit, lifecycle, socket_access  # noqa: F401
        from .api import schema  # noqa: F401  (registers the OpenAPI auth extension)
