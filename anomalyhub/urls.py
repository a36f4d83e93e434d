"""Composes every app's routes. Domain apps never import this module (only anomalyhub.lib)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .lib import health
from .lib.metrics import metrics_view

api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("watchlists.api.urls")),
    path("", include("detection.api.urls")),
    path("", include("alerts.api.urls")),
    path("", include("watchlists.providers.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("graphql/", include("anomalyhub.graphql_view")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("", include("frontend.urls")),
]

handler404 = "anomalyhub.lib.errors.handler404"
handler500 = "anomalyhub.lib.errors.handler500"
