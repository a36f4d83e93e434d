"""Provider REST API: credentials (write-only keys, test connection), series links (with the
provider's last error), backfills. Thin: scope through accounts, call providers.services."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.api.base import ActorMixin, TenantViewSet

from .. import services
from ..models import Backfill, ProviderCredential, SeriesProvider
from . import serializers as s


class CredentialViewSet(TenantViewSet):
    """The organization's provider API keys. Setting one needs the 'manage' right; the key is
    encrypted at rest and never returned."""

    queryset = ProviderCredential.objects.order_by("provider")
    write_action = "manage"
    action_permissions = {"test": "manage"}

    def get_serializer_class(self):
        return s.CredentialUpdateSerializer if self.action in ("update", "partial_update") else s.CredentialSerializer

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.save_credential(actor=self.actor, provider=data["provider"],
                                                       secret=data["secret"])

    def perform_update(self, serializer):
        secret = serializer.validated_data.get("secret")
        if secret:
            serializer.instance = services.save_credential(actor=self.actor, provider=serializer.instance.provider,
                                                           secret=secret)

    def perform_destroy(self, instance):
        services.delete_credential(actor=self.actor, credential=instance)

    @extend_schema(request=None, responses={200: s.TestResultSerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Calls the provider once with the stored key; the outcome is also kept on the credential."""
        credential = services.test_connection(actor=self.actor, credential=self.get_object())
        return Response({"ok": bool(credential.last_test_ok), "error": credential.last_error,
                         "tested_at": credential.last_tested_at})


class SeriesProviderViewSet(TenantViewSet):
    """Which provider feeds which series; `last_error` says why a series' data stopped."""

    queryset = SeriesProvider.objects.select_related("series").order_by("series__symbol")
    action_permissions = {"backfill": "ingest"}

    def get_serializer_class(self):
        if self.action in ("update", "partial_update"):
            return s.SeriesProviderUpdateSerializer
        return s.SeriesProviderSerializer

    def get_queryset(self):
        qs = super().get_queryset()
        series = self.request.query_params.get("series")
        return qs.filter(series_id=series) if series and series.isdigit() else qs

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.connect_series(actor=self.actor, series=data["series"],
                                                      provider=data["provider"],
                                                      provider_symbol=data.get("provider_symbol", ""),
                                                      enabled=data.get("enabled", True))

    def perform_update(self, serializer):
        serializer.instance = services.update_link(actor=self.actor, link=serializer.instance,
                                                   **serializer.validated_data)

    def perform_destroy(self, instance):
        services.disconnect_series(actor=self.actor, link=instance)

    @extend_schema(request=s.BackfillRequestSerializer, responses={202: s.BackfillSerializer})
    @action(detail=True, methods=["post"])
    def backfill(self, request, pk=None):
        """Queues a backfill of start..end; asking again for the same range resumes it."""
        link = self.get_object()
        body = s.BackfillRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        backfill = services.request_backfill(actor=self.actor, series=link.series, provider=link.provider,
                                             **body.validated_data)
        return Response(s.BackfillSerializer(backfill).data, status=status.HTTP_202_ACCEPTED)


class BackfillViewSet(ActorMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Backfills and their progress (read-only; start one from a series' provider link)."""

    serializer_class = s.BackfillSerializer
    queryset = Backfill.objects.order_by("-created_at")

    def get_queryset(self):
        return self.queryset.for_actor(self.actor, "view")
