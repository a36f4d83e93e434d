from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("series", views.SeriesViewSet, basename="series")
router.register("watchlists", views.WatchlistViewSet, basename="watchlist")

urlpatterns = [path("ingest/", views.IngestView.as_view(), name="ingest"), *router.urls]
