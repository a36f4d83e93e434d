import pytest
from django.db import connection

from tests.factories import SeriesFactory


@pytest.fixture
def spy(org_a):
    return SeriesFactory(organization=org_a, symbol="SPY", kind="trade", exchange="XNYS", bar_seconds=None)


@pytest.fixture
def bars(org_a):
    return SeriesFactory(organization=org_a, symbol="IBM", kind="bar", exchange="XNYS", bar_seconds=60)


@pytest.fixture
def sensor(org_a):
    return SeriesFactory(organization=org_a, symbol="pump-7.temp", kind="metric", exchange="", bar_seconds=None)


def count_rows(table: str, series_id: int) -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {table} WHERE series_id = %s", [series_id])
        return cursor.fetchone()[0]
