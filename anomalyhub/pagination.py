from rest_framework.pagination import LimitOffsetPagination


class Pagination(LimitOffsetPagination):
    """limit/offset, with a stated maximum: asking for more is capped and the response says so."""

    default_limit = 50
    max_limit = 1000

    def get_paginated_response(self, data):
        response = super().get_paginated_response(data)
        response.data["limit"] = self.limit
        response.data["max_limit"] = self.max_limit
        return response

    def get_paginated_response_schema(self, schema):
        schema = super().get_paginated_response_schema(schema)
        schema["properties"]["limit"] = {"type": "integer"}
        schema["properties"]["max_limit"] = {"type": "integer"}
        return schema
