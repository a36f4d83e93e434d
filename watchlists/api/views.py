"""Watchlists REST API. Thin: scope through accounts, call watchlists services, serialize."""

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts.api.base import ActorMixin, PkLookup, TenantViewSet
from anomalyhub.lib.parsers import JSONParser

from .. import ingest, services
from ..models import Series, Watchlist, WatchlistItem
from ..store import reader
from ..store.schema import FEATURE_COLUMNS
from . import points as points_api
from . import serializers as s
from .parsers import CSVParser

IDEMPOTENCY_HEADER = "Idempotency-Key"


def _idempotency_key(request) -> str | None:
    key = request.headers.get(IDEMPOTENCY_HEADER)
    if key is not None and not (0 < len(key) <= 200):
        raise ValidationError({IDEMPOTENCY_HEADER: ["Must be 1 to 200 characters."]})
    return key


# The point pages are the API's largest bodies: orjson renders them; the browsable API stays.
POINTS_RENDERERS = [points_api.PointsJSONRenderer,
                    *(r for r in api_settings.DEFAULT_RENDERER_CLASSES if r is not JSONRenderer)]


def _ingest_response(results):
    duplicate = all(r.duplicate for r in results)
    return status.HTTP_200_OK if duplicate else status.HTTP_201_CREATED


class SeriesViewSet(TenantViewSet):
    """Series of the organization; `/points/` reads (GET) and ingests (POST) their data."""

    serializer_class = s.SeriesSerializer
    queryset = Series.objects.order_by("symbol")
    parser_classes = [JSONParser]

    def required_action(self):
        if self.action == "points" and self.request.method == "POST":
            return "ingest"
        return super().required_action()

    def perform_create(self, serializer):
        serializer.instance = services.create_series(actor=self.actor, **serializer.validated_data)

    def perform_update(self, serializer):
        serializer.instance = services.update_series(actor=self.actor, series=serializer.instance,
                                                     **serializer.validated_data)

    def perform_destroy(self, instance):
        services.delete_series(actor=self.actor, series=instance)

    # The point reads are most of the API's traffic; their series lookup is compiled once.
    _point_read_lookup = PkLookup(Series.objects.all())

    def get_object(self):
        if (self.action in ("points", "features") and self.request.method == "GET"
                and "symbol" not in self.request.query_params):  # get_queryset's one filter
            return self._point_read_lookup.get_or_404(self)
        return super().get_object()

    def get_queryset(self):
        qs = super().get_queryset()
        if self.action in ("list", "retrieve"):
            qs = qs.select_related("provider_link")  # the serializer's `provider`, in the same query
        symbol = self.request.query_params.get("symbol")
        return qs.filter(symbol=symbol) if symbol else qs

    @extend_schema(methods=["GET"], parameters=[s.PointsQuerySerializer], responses=s.PointsPageSerializer,
                   description="Points by time range. Rows are [ts, *columns]; at most `limit` rows "
                               "(default 10,000, max 50,000); `truncated` and `next` say when more remain.")
    @extend_schema(methods=["POST"], request={"application/json": {"type": "array", "items": {"type": "object"}},
                                              "text/csv": {"type": "string"}},
                   responses={201: s.IngestResultSerializer, 200: s.IngestResultSerializer},
                   parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER)],
                   description="Ingest points: a JSON array of objects or a CSV body (Alpha Vantage intraday CSV "
                               "accepted as is). A bad row rejects the whole batch with 400 and a list of "
                               "{row, column, reason}.")
    # CSV is a way to send points, nothing else: on /series/ itself it could only meet a 400.
    @action(detail=True, methods=["get", "post"], renderer_classes=POINTS_RENDERERS,
            parser_classes=[JSONParser, CSVParser])
    def points(self, request, pk=None):
        series = self.get_object()
        if request.method == "POST":
            return self._ingest(request, series)
        query = s.PointsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        start_us, end_us = points_api.time_window(series, q.get("start"), q.get("end"))
        data, columns = services.read_points(series, q["resolution"], start_us, end_us, q["limit"])
        return Response(points_api.page(request, series, data, columns, resolution=q["resolution"],
                                        start_us=start_us, end_us=end_us, limit=q["limit"],
                                        time_format=q["time_format"]))

    def _ingest(self, request, series):
        tz = services.series_timezone(series)
        if isinstance(request.data, bytes):
            points = ingest.validate(ingest.frame_from_csv(request.data), series.kind, tz)
        else:
            body = request.data
            points = ingest.points_from_json(body.get("points") if isinstance(body, dict) else body, series.kind, tz)
        (result,) = services.ingest(actor=self.actor, batches=[(series, points)],
                                    idempotency_key=_idempotency_key(request))
        if isinstance(request.data, bytes) and result.stored:  # a CSV upload: an import of history
            services.announce_import(series, int(points.ts.min()), int(points.ts.max()))
        return Response(result.as_dict(), status=_ingest_response([result]))

    @extend_schema(parameters=[s.PointsQuerySerializer], responses=s.PointsPageSerializer)
    @action(detail=True, methods=["get"], renderer_classes=POINTS_RENDERERS)
    def features(self, request, pk=None):
        """Seed 001's feature table (1-minute, point-in-time correct)."""
        series = self.get_object()
        query = s.PointsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        start_us, end_us = points_api.time_window(series, q.get("start"), q.get("end"))
        data = reader.read_features(series.pk, start_us, end_us, q["limit"] + 1)
        return Response(points_api.page(request, series, data, list(FEATURE_COLUMNS), resolution="1m",
                                        start_us=start_us, end_us=end_us, limit=q["limit"],
                                        time_format=q["time_format"]))


class WatchlistViewSet(TenantViewSet):
    serializer_class = s.WatchlistSerializer
    queryset = Watchlist.objects.order_by("name").prefetch_related(
        Prefetch("items", queryset=WatchlistItem.objects.only("id", "watchlist_id", "series_id")))

    def perform_create(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.save_watchlist(actor=self.actor, name=data["name"],
                                                      description=data.get("description", ""),
                                                      series_ids=data.get("series", []))

    def perform_update(self, serializer):
        data = serializer.validated_data
        serializer.instance = services.save_watchlist(actor=self.actor, watchlist=serializer.instance,
                                                      name=data.get("name"), description=data.get("description"),
                                                      series_ids=data.get("series"))


class IngestView(ActorMixin, APIView):
    """Points for many series in one atomic request, keyed by symbol."""

    parser_classes = [JSONParser]  # the body is a JSON object of lists: no form can carry it

    def required_action(self):
        return "ingest"

    @extend_schema(request=s.MultiIngestSerializer, responses={201: s.IngestResultSerializer(many=True)},
                   parameters=[OpenApiParameter(IDEMPOTENCY_HEADER, str, OpenApiParameter.HEADER)])
    def post(self, request):
        body = request.data
        if not isinstance(body, dict) or not isinstance(body.get("points"), dict) or not body["points"]:
            raise ValidationError({"points": ['Expected {"points": {"SYMBOL": [ ...points... ], ...}}.']})
        by_symbol = services.series_by_symbol(actor=self.actor, symbols=list(body["points"]))
        batches = []
        for symbol, rows in body["points"].items():
            series = by_symbol[symbol]
            try:
                points = ingest.points_from_json(rows, series.kind, services.series_timezone(series))
            except ingest.BatchInvalid as exc:
                exc.details["symbol"] = symbol
                raise
            batches.append((series, points))
        results = services.ingest(actor=self.actor, batches=batches, idempotency_key=_idempotency_key(request))
        return Response([r.as_dict() for r in results], status=_ingest_response(results))
