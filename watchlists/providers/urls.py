"""Provider routes (credentials, test connection, series links, backfills). Composed into /api/v1/ by anomalyhub.urls."""

from rest_framework.routers import SimpleRouter

from .api import views

router = SimpleRouter()
router.register("provider-credentials", views.CredentialViewSet, basename="provider-credential")
router.register("series-providers", views.SeriesProviderViewSet, basename="series-provider")
router.register("backfills", views.BackfillViewSet, basename="backfill")

urlpatterns = router.urls
