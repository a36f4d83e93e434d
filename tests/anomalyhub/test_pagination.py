"""anomalyhub.lib.pagination reads the page first and counts only when the page cannot tell the total:
every page (count, next, previous, results) is the one DRF's LimitOffsetPagination gives."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from anomalyhub.lib.pagination import Pagination
from tests.factories import SeriesFactory
from watchlists.models import Series


class DrfPagination(LimitOffsetPagination):
    default_limit, max_limit = Pagination.default_limit, Pagination.max_limit


def _page(pagination, query: str):
    request = Request(APIRequestFactory().get(f"/api/v1/series/?{query}"))
    results = pagination.paginate_queryset(Series.objects.order_by("symbol"), request)
    return pagination.count, pagination.get_next_link(), pagination.get_previous_link(), [s.pk for s in results]


@pytest.mark.django_db
@pytest.mark.parametrize("rows", [0, 1, 5, 6])
@pytest.mark.parametrize("query", ["", "limit=5", "limit=5&offset=1", "limit=5&offset=5", "limit=5&offset=6",
                                   "limit=2&offset=4", "limit=5&offset=99", "limit=0", "limit=x&offset=y"])
def test_every_page_is_drfs_page(org_a, rows, query):
    for i in range(rows):
        SeriesFactory(organization=org_a, symbol=f"P{i}")
    assert _page(Pagination(), query) == _page(DrfPagination(), query)


@pytest.mark.django_db
def test_a_short_page_needs_no_count_query(org_a):
    for i in range(3):
        SeriesFactory(organization=org_a, symbol=f"P{i}")
    for query, queries in [("limit=5", 1), ("", 1), ("limit=5&offset=1", 1), ("limit=3", 2), ("limit=2", 2),
                           ("limit=5&offset=3", 2), ("limit=5&offset=9", 2)]:
        with CaptureQueriesContext(connection) as captured:
            _page(Pagination(), query)
        assert len(captured) == queries, query


@pytest.mark.django_db
def test_an_empty_list_is_one_query(org_a):
    with CaptureQueriesContext(connection) as captured:
        assert _page(Pagination(), "") == (0, None, None, [])
    assert len(captured) == 1
