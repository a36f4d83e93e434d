from django.conf import settings
from rest_framework.exceptions import ValidationError
from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    """limit/offset, with a stated maximum: asking for more is capped and the response says so.
    An offset past API_MAX_OFFSET is refused (400): the database reads every row it skips, and one
    beyond bigint was a 500."""

    default_limit = 50
    max_limit = settings.API_MAX_PAGE_SIZE

    def get_offset(self, request):
        offset = super().get_offset(request)
        deepest = getattr(settings, "API_MAX_OFFSET", 1_000_000)
        if offset > deepest:
            raise ValidationError({self.offset_query_param: [
                f"At most {deepest}; narrow the list with its filters (e.g. a time range) to reach older items."]})
        return offset

    def paginate_queryset(self, queryset, request, view=None):
        """DRF's, except that the page is read first: a page shorter than the limit (the common case
        for series, watchlists and most filtered lists) already tells the total, so the COUNT query
        is only run when the page is full or past the end. Same count, next/previous and results."""
        self.request = request
        self.limit = self.get_limit(request)
        if self.limit is None:
            return None
        self.offset = self.get_offset(request)
        page = list(queryset[self.offset:self.offset + self.limit])
        if 0 < len(page) < self.limit or (not page and self.offset == 0):
            self.count = self.offset + len(page)
        else:
            self.count = self.get_count(queryset)
        if self.count > self.limit and self.template is not None:
            self.display_page_controls = True
        return page

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["limit"] = self.limit
        response.data["max_limit"] = self.max_limit
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        for link in ("next", "previous"):  # DRF writes OpenAPI 3.0's `nullable`; the document is 3.1
            schema["properties"][link] = {"type": ["string", "null"], "format": "uri"}
        schema["properties"]["limit"] = {"type": "integer"}
        schema["properties"]["max_limit"] = {"type": "integer"}
        return schema
