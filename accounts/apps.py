from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import audit  # noqa: F401  (connects the login/logout audit receivers)
        from .api import schema  # noqa: F401  (registers the OpenAPI auth extension)
