from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views
from .export import ExportView

router = SimpleRouter()
router.register("rules", views.RuleViewSet, basename="rule")
router.register("anomalies", views.AnomalyViewSet, basename="anomaly")
router.register("detectors", views.DetectorViewSet, basename="detector")
router.register("models", views.ModelVersionViewSet, basename="modelversion")
router.register("training-runs", views.TrainingRunViewSet, basename="trainingrun")
router.register("history-runs", views.HistoryRunViewSet, basename="historyrun")
urlpatterns = [path("export/", ExportView.as_view(), name="export"), *router.urls]
