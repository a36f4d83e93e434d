"""Alerts REST API: thin adapters over alerts.services."""

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer, TemplateHTMLRenderer
from rest_framework.response import Response

from accounts.api.base import TenantReadOnlyViewSet, TenantViewSet

from ..models import AlertSubscription, DeliveryAttempt, Notification, WebhookEndpoint
from ..services import delivery, links, replay, subscriptions, webhooks
from . import serializers as s

# The replay's result is a report (counts, the would-be anomalies and notifications), not a subscription.
REPLAY_RESULT = OpenApiResponse(OpenApiTypes.OBJECT, description="what the subscription would have produced")


def _dict(data) -> dict:
    return data if isinstance(data, dict) else {}


class AlertSubscriptionViewSet(TenantViewSet):
    """Your alert subscriptions (admins: everyone's). POST /{id}/replay/?start=&end= replays history."""

    serializer_class = s.AlertSubscriptionSerializer
    queryset = AlertSubscription.objects.select_related("user").order_by("pk")
    write_action = "view"  # everyone manages their own; services check ownership
    action_permissions = {"replay": "view", "replay_unsaved": "view"}

    def get_queryset(self):
        return subscriptions.visible_subscriptions(self.actor).select_related("user").order_by("pk")

    def perform_create(self, serializer):
        serializer.instance = subscriptions.save_subscription(
            actor=self.actor, subscription=AlertSubscription(**serializer.validated_data))

    def perform_update(self, serializer):
        sub = serializer.instance
        for field, value in serializer.validated_data.items():
            setattr(sub, field, value)
        serializer.instance = subscriptions.save_subscription(actor=self.actor, subscription=sub)

    def perform_destroy(self, instance):
        subscriptions.delete_subscription(actor=self.actor, subscription=instance)

    def _window(self, request):
        query = s.WindowSerializer(data={**request.query_params.dict(), **_dict(request.data)})
        query.is_valid(raise_exception=True)
        return query.validated_data

    @extend_schema(request=None, parameters=[s.WindowSerializer], responses={200: REPLAY_RESULT})
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        """The anomalies and notifications this subscription would have produced over [start, end)."""
        sub = self.get_object()
        return Response(replay.replay_subscription(actor=self.actor, subscription=sub, **self._window(request)))

    @extend_schema(request=s.AlertSubscriptionSerializer, parameters=[s.WindowSerializer],
                   operation_id="alert_subscriptions_replay_unsaved", responses={200: REPLAY_RESULT})
    @action(detail=False, methods=["post"], url_path="replay")
    def replay_unsaved(self, request):
        """Replays an unsaved subscription (the body) over [start, end)."""
        window = self._window(request)
        body = {k: v for k, v in _dict(request.data).items() if k not in ("start", "end")}
        body.setdefault("channels", ["email"])
        serializer = self.get_serializer(data=body)
        serializer.is_valid(raise_exception=True)
        sub = AlertSubscription(organization_id=self.actor.organization_id, user=self.actor.credited_user,
                                **serializer.validated_data)
        subscriptions.validate(sub)
        return Response(replay.replay_subscription(actor=self.actor, subscription=sub, **window))


class WebhookEndpointViewSet(TenantViewSet):
    """The organization's webhook endpoints. Secrets are shown once: on create and rotate-secret."""

    serializer_class = s.WebhookEndpointSerializer
    queryset = WebhookEndpoint.objects.order_by("pk")
    write_action = "manage"
    action_permissions = {"rotate_secret": "manage", "test": "manage"}

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint = webhooks.create_endpoint(actor=self.actor, **serializer.validated_data)
        return Response(s.WebhookEndpointWithSecretSerializer(endpoint).data, status=status.HTTP_201_CREATED)

    def perform_update(self, serializer):
        serializer.instance = webhooks.update_endpoint(actor=self.actor, endpoint=serializer.instance,
                                                       **serializer.validated_data)

    def perform_destroy(self, instance):
        webhooks.delete_endpoint(actor=self.actor, endpoint=instance)

    @extend_schema(request=None, responses=s.WebhookEndpointWithSecretSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new secret; the previous one stays valid (both sign) for 24 hours."""
        endpoint = webhooks.rotate_secret(actor=self.actor, endpoint=self.get_object())
        return Response(s.WebhookEndpointWithSecretSerializer(endpoint).data)

    @extend_schema(request=None, responses={202: s.DeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Sends a signed "webhook.test" event; the result appears in /deliveries/."""
        notification = webhooks.test_send(actor=self.actor, endpoint=self.get_object())
        return Response(s.DeliverySerializer(notification).data, status=status.HTTP_202_ACCEPTED)


class DeliveryViewSet(TenantReadOnlyViewSet):
    """The delivery log: every notification with its attempts. POST /{id}/replay/ sends it again."""

    serializer_class = s.DeliverySerializer
    queryset = Notification.objects.prefetch_related(
        Prefetch("delivery_attempts", queryset=DeliveryAttempt.objects.order_by("number"))).order_by("-pk")
    action_permissions = {"replay": "view"}

    def get_queryset(self):
        return subscriptions.owned_by(super().get_queryset(), self.actor)

    @extend_schema(request=None, responses={202: s.DeliverySerializer})
    @action(detail=True, methods=["post"])
    def replay(self, request, pk=None):
        copy = delivery.replay(notification=self.get_object(), actor=self.actor)
        return Response(s.DeliverySerializer(copy).data, status=status.HTTP_202_ACCEPTED)


class SignedLinkViewSet(viewsets.GenericViewSet):
    """One-click links from notifications. No login: the signed token is the credential.

    GET describes the link (and renders a confirm button in a browser); POST performs it. The
    action needs a POST because mail scanners pre-fetch links with GET and would use them up."""

    queryset = Notification.objects.none()  # acts on the token's organization only, via services.links
    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    lookup_field = "token"
    lookup_value_regex = "[^/]+"
    renderer_classes = [JSONRenderer, TemplateHTMLRenderer]
    metadata_class = None  # OPTIONS would describe a serializer this viewset does not have (500)
    extra_error_statuses = (410,)  # an expired or used-up link (services.links.LinkExpired)

    @extend_schema(responses={200: OpenApiResponse(description="what the link does")})
    def retrieve(self, request, token=None):
        info = links.describe(token)
        return Response(info, template_name="alerts/link.html")

    @extend_schema(request=None, responses={200: OpenApiResponse(description="the action's result")})
    def use(self, request, token=None):
        result = links.use_link(token)
        return Response(result, template_name="alerts/link_done.html")
