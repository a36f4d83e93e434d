import pytest
from django.db import connection

from accounts.tenancy import system_actor
from tests.factories import SeriesFactory
from watchlists.providers import services

from .fakes import FakeAlphaVantage, FakePolygon


@pytest.fixture
def fake_av(settings):
    server = FakeAlphaVantage().start()
    settings.ALPHAVANTAGE_BASE_URL = server.url
    yield server
    server.stop()


@pytest.fixture
def fake_polygon(settings):
    server = FakePolygon().start()
    settings.POLYGON_BASE_URL = server.url
    yield server
    server.stop()


class Sleeps(list):
    """Injected instead of time.sleep: records the delays, waits for none of them."""

    def __call__(self, seconds):
        self.append(seconds)


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def actor(org_a):
    return system_actor(org_a.pk)


@pytest.fixture
def ibm(org_a):
    return SeriesFactory(organization=org_a, symbol="IBM", kind="bar", exchange="XNYS", bar_seconds=60)


@pytest.fixture
def av_link(actor, ibm):
    services.save_credential(actor=actor, provider="alphavantage", secret=FakeAlphaVantage.API_KEY)
    return services.connect_series(actor=actor, series=ibm, provider="alphavantage")


@pytest.fixture
def aapl(org_a):
    return SeriesFactory(organization=org_a, symbol="AAPL", kind="bar", exchange="XNYS", bar_seconds=60)


@pytest.fixture
def pg_link(actor, aapl):
    services.save_credential(actor=actor, provider="polygon", secret=FakePolygon.API_KEY)
    return services.connect_series(actor=actor, series=aapl, provider="polygon")


def bar_times(series_id: int) -> list[int]:
    """Stored bar times, µs UTC, ascending (duplicates would show twice)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT (extract(epoch from ts) * 1000000)::bigint FROM watchlists_bar "
                       "WHERE series_id = %s ORDER BY ts", [series_id])
        return [r[0] for r in cursor.fetchall()]
