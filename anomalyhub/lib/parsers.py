"""DRF's JSON parser, through the one bounded JSON reader (anomalyhub.lib.jsonbody): orjson for speed
(an ingest body of 1,000 points: ~0.4 ms instead of ~2 ms), a nesting bound against RecursionError."""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DRFJSONParser
from rest_framework.parsers import get_encoding

from .jsonbody import JSONBodyError, loads


class JSONParser(DRFJSONParser):
    """Every JSON body of the REST API (settings.REST_FRAMEWORK's DEFAULT_PARSER_CLASSES)."""

    def parse(self, stream, media_type=None, parser_context=None):
        body = stream.read() if stream is not None else b""
        encoding = get_encoding(parser_context or {})
        try:
            if encoding.lower().replace("-", "") != "utf8":
                body = body.decode(encoding)
            return loads(body, parse_constant=_refuse_constant)
        except (JSONBodyError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None


def _refuse_constant(name: str):
    # As DRF's strict mode: NaN and Infinity are not JSON.
    raise ValueError(f"{name} is not a valid JSON value")
