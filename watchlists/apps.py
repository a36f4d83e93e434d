from django.apps import AppConfig


class WatchlistsConfig(AppConfig):
    name = "watchlists"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import lifecycle  # noqa: F401  (deletes store rows with their series / organization)
