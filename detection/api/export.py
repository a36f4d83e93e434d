"""GET /api/v1/export/?dataset=points|anomalies|rules&file_format=csv|json — thin over detection.export."""

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.views import APIView

from accounts.api.base import ActorMixin

from .. import export


class ExportView(ActorMixin, APIView):
    """The organization's data as a file download (admins and owners)."""

    def required_action(self):
        return "manage"

    @extend_schema(
        parameters=[OpenApiParameter("dataset", str, enum=list(export.DATASETS), required=True),
                    OpenApiParameter("file_format", str, enum=list(export.FORMATS), default="csv")],
        responses={(200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="one row per item"),
                   (200, "application/json"): OpenApiResponse(OpenApiTypes.ANY, description="an array of objects")})
    def get(self, request):
        dataset = request.query_params.get("dataset", "")
        file_format = request.query_params.get("file_format", "csv")
        chunks = export.export(actor=self.actor, dataset=dataset, file_format=file_format)
        response = StreamingHttpResponse(chunks, content_type=export.FORMATS[file_format])
        stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = (f'attachment; filename="org-{self.actor.organization_id}-{dataset}-'
                                           f'{stamp}.{file_format}"')
        return response
