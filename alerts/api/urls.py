"""Alerts routes (subscriptions, webhooks, deliveries, one-click links). Composed into /api/v1/."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from . import views

router = SimpleRouter()
router.register("alert-subscriptions", views.AlertSubscriptionViewSet, basename="alertsubscription")
router.register("webhooks", views.WebhookEndpointViewSet, basename="webhookendpoint")
router.register("deliveries", views.DeliveryViewSet, basename="delivery")

signed_link = views.SignedLinkViewSet.as_view({"get": "retrieve", "post": "use"})
urlpatterns = [*router.urls, path("alerts/links/<str:token>/", signed_link, name="alert-link")]
