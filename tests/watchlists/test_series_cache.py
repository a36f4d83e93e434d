"""Ingest remembers (organization, symbol) -> series per process for SERIES_CACHE_SECONDS, and a
batch never lands on a series that changed behind the cache's back (in another process): it is
refused whole, with a clear error, and the next batch looks the series up again."""

import copy

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.watchlists.conftest import count_rows
from watchlists import services
from watchlists.models import Series

pytestmark = pytest.mark.django_db

TICKS = [{"ts": "2024-03-01T14:30:00Z", "price": 10.5, "size": 100},
         {"ts": "2024-03-01T14:30:01Z", "price": 10.6, "size": 200}]


def _post(client, symbol="SPY", rows=TICKS):
    return client.post("/api/v1/ingest/", {"points": {symbol: rows}}, format="json")


def _series_reads(queries) -> list[str]:
    """Lookups of series. The row lock that moves last_point_at forward (and checks the cached
    series is still what it was) is part of every batch, not a lookup."""
    return [q["sql"] for q in queries if q["sql"].startswith("SELECT") and 'FROM "watchlists_series"' in q["sql"]
            and not q["sql"].endswith('FOR UPDATE OF "watchlists_series"')]


def _as_another_process_cached_it(series: Series) -> None:
    """Puts the series back into this process' cache as it was, as a process that did not see the
    change would still hold it."""
    services._SERIES.put((series.organization_id, series.symbol), copy.copy(series))


def test_a_second_batch_does_not_look_its_series_up_again(alice_client, spy):
    assert _post(alice_client).status_code == 201
    with CaptureQueriesContext(connection) as queries:
        r = _post(alice_client, rows=[{"ts": "2024-03-01T14:31:00Z", "price": 10.7, "size": 100}])
    assert r.status_code == 201, r.content
    assert _series_reads(queries) == []
    assert count_rows("watchlists_tick", spy.pk) == 3


def test_creating_renaming_or_deleting_a_series_here_is_seen_at_once(alice_client, spy):
    assert _post(alice_client).status_code == 201
    assert alice_client.patch(f"/api/v1/series/{spy.pk}/", {"symbol": "SPY.X"}, format="json").status_code == 200
    assert _post(alice_client).json()["error"]["code"] == "unknown_symbol"
    assert _post(alice_client, "SPY.X").status_code == 201
    assert alice_client.delete(f"/api/v1/series/{spy.pk}/").status_code == 204
    assert _post(alice_client, "SPY.X").json()["error"]["code"] == "unknown_symbol"


def test_a_series_deleted_in_another_process_gets_nothing_and_a_clear_error(alice_client, spy):
    assert _post(alice_client).status_code == 201
    stale = copy.copy(spy)
    alice_client.delete(f"/api/v1/series/{spy.pk}/")
    _as_another_process_cached_it(stale)

    r = _post(alice_client)
    assert r.status_code == 400, r.content
    error = r.json()["error"]
    assert error["code"] == "unknown_symbol" and "nothing was stored" in error["message"]
    assert error["details"]["symbols"] == ["SPY"]
    assert count_rows("watchlists_tick", spy.pk) == 0  # the batch was rolled back, not orphaned
    # The stale entry is gone: the next batch is a plain unknown symbol.
    assert "Create the series first" in _post(alice_client).json()["error"]["message"]


def test_a_kind_changed_in_another_process_is_refused_before_any_point_is_stored(alice_client, org_a):
    r = alice_client.post("/api/v1/series/", {"symbol": "NEW", "kind": "trade"}, format="json")
    assert r.status_code == 201, r.content
    series = Series.objects.get(pk=r.json()["id"])
    _as_another_process_cached_it(series)
    Series.objects.filter(pk=series.pk).update(kind="metric")  # no signal here: another process did it

    r = _post(alice_client, "NEW")
    assert r.status_code == 400 and "nothing was stored" in r.json()["error"]["message"]
    assert count_rows("watchlists_tick", series.pk) == count_rows("watchlists_metric", series.pk) == 0
    r = _post(alice_client, "NEW", [{"ts": "2024-03-01T14:30:00Z", "value": 1.5}])
    assert r.status_code == 201, r.content
    assert count_rows("watchlists_metric", series.pk) == 1


def test_the_cache_never_answers_for_another_organization(alice_client, carol_client, spy):
    assert _post(alice_client).status_code == 201
    r = _post(carol_client)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unknown_symbol"
    assert count_rows("watchlists_tick", spy.pk) == 2


def test_zero_seconds_turns_the_cache_off(alice_client, spy, settings):
    settings.SERIES_CACHE_SECONDS = 0
    assert _post(alice_client).status_code == 201
    with CaptureQueriesContext(connection) as queries:
        assert _post(alice_client, rows=[{"ts": "2024-03-01T14:32:00Z", "price": 1, "size": 1}]).status_code == 201
    assert len(_series_reads(queries)) == 1


@pytest.mark.parametrize("change", [{"symbol": "AAPL-OLD"}, {"exchange": "XLON"}])
def test_a_series_renamed_or_moved_in_another_process_gets_nothing(alice_client, spy, change):
    """The stale entry names series 7 'SPY'; another process renamed it (and may have created a new
    'SPY'), or moved it to another exchange (naive times would be read in the wrong zone)."""
    assert _post(alice_client).status_code == 201
    stale = copy.copy(spy)
    Series.objects.filter(pk=spy.pk).update(**change)  # no signal here: another process did it
    _as_another_process_cached_it(stale)

    r = _post(alice_client, rows=[{"ts": "2024-03-01T14:40:00Z", "price": 11, "size": 1}])
    assert r.status_code == 400 and "nothing was stored" in r.json()["error"]["message"], r.content
    assert count_rows("watchlists_tick", spy.pk) == 2
