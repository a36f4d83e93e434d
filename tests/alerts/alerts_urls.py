"""Only the alerts routes, so the walker can be pointed at them alone."""

from django.urls import include, path

urlpatterns = [path("api/v1/", include("alerts.api.urls"))]
