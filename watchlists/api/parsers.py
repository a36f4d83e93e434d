from rest_framework.parsers import BaseParser


class CSVParser(BaseParser):
    """Passes a CSV body through as bytes; watchlists.ingest checks and parses it."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read()
