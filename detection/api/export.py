"""GET /api/v1/export/?dataset=points|anomalies|rules&file_format=csv|json — thin over detection.export."""

import threading

from django.conf import settings
from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.views import APIView

from accounts.api.base import ActorMixin
from accounts.authentication import throttled
from anomalyhub.lib import tenant_slots

from .. import export

RETRY_SECONDS = 10
# Exports running in this process (settings.EXPORT_STREAMS): each streams from an HTTP thread of the
# process, which the API and ingest share.
_SLOTS = threading.BoundedSemaphore(settings.EXPORT_STREAMS)


class _ExportResponse(StreamingHttpResponse):
    """Gives its export slots (this process's, the organization's) back when the server closes it:
    finished, failed, or the client gone (a generator never started would not run a `finally`, so
    the slots are not tied to it)."""

    def __init__(self, *args, release_org_slot, **kwargs):
        super().__init__(*args, **kwargs)
        self._slot = _SLOTS
        self._release_org_slot = release_org_slot

    def close(self):
        try:
            super().close()
        finally:
            slot, self._slot = self._slot, None
            if slot is not None:
                slot.release()
                self._release_org_slot()


class ExportView(ActorMixin, APIView):
    """The organization's data as a file download (admins and owners)."""

    def required_action(self):
        return "manage"

    @extend_schema(
        parameters=[OpenApiParameter("dataset", str, enum=list(export.DATASETS), required=True),
                    OpenApiParameter("file_format", str, enum=list(export.FORMATS), default="csv")],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="one row per item"),
                   (200, "application/json"): OpenApiResponse(OpenApiTypes.ANY, description="an array of objects"),
                   429: OpenApiResponse(description="this server runs as many exports as it may; see Retry-After")})
    def get(self, request):
        dataset = request.query_params.get("dataset", "")
        file_format = request.query_params.get("file_format", "csv")
        chunks = export.export(actor=self.actor, dataset=dataset, file_format=file_format)  # checks, reads nothing yet
        if not _SLOTS.acquire(blocking=False):
            raise throttled(f"This server is already streaming {settings.EXPORT_STREAMS} export(s), as many as it "
                            f"runs at once; retry in {RETRY_SECONDS} seconds.", RETRY_SECONDS)
        try:
            release_org_slot = tenant_slots.acquire("export", self.actor.organization_id, settings.ORG_MAX_EXPORTS,
                                                    "ORG_MAX_EXPORTS")
        except BaseException:
            _SLOTS.release()
            raise
        try:
            response = _ExportResponse(chunks, content_type=export.FORMATS[file_format],
                                       release_org_slot=release_org_slot)
        except BaseException:
            _SLOTS.release()
            release_org_slot()
            raise
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = (f'attachment; filename="org-{self.actor.organization_id}-{dataset}-'
                                           f'{stamp}.{file_format}"')
        return response
