"""The point reads find their series through accounts.api.base.PkLookup (SQL compiled once): it
finds exactly what for_actor(...).get(pk=...) finds, and the API answers as before."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.api.base import PkLookup
from accounts.tenancy import ANONYMOUS, actor_for_user, system_actor
from watchlists.models import Series

from ..factories import SeriesFactory


@pytest.mark.django_db
def test_it_finds_what_for_actor_finds(org_a, org_b, alice, carol):
    mine, theirs = SeriesFactory(organization=org_a), SeriesFactory(organization=org_b)
    lookup = PkLookup(Series.objects.order_by("symbol"))
    actors = [actor_for_user(alice, org_a.pk), actor_for_user(carol, org_b.pk), system_actor(org_a.pk), ANONYMOUS]
    pks = [mine.pk, theirs.pk, str(mine.pk), f" {mine.pk}", "0", "-1", "abc", "1.5", "", None, 10**20, 999_999]
    for actor in actors:
        for pk in pks:
            try:
                expected = Series.objects.for_actor(actor, "view").get(pk=pk)
            except (Series.DoesNotExist, ValueError, TypeError):
                expected = None
            found = lookup.get(actor, pk)
            assert found == expected, (actor, pk)
            if found is not None:
                assert [getattr(found, f.attname) for f in Series._meta.concrete_fields] == [
                    getattr(expected, f.attname) for f in Series._meta.concrete_fields]


@pytest.mark.django_db
def test_one_query_once_compiled(org_a, alice):
    series = SeriesFactory(organization=org_a)
    lookup, actor = PkLookup(Series.objects.all()), actor_for_user(alice, org_a.pk)
    lookup.get(actor, series.pk)
    with CaptureQueriesContext(connection) as queries:
        assert lookup.get(actor, series.pk) == series
    assert len(queries) == 1 and "organization_id" in queries[0]["sql"]


def test_a_queryset_with_parameters_of_its_own_is_refused():
    with pytest.raises(ValueError):
        PkLookup(Series.objects.filter(symbol="X")).get(system_actor(1), 1)


@pytest.mark.django_db
def test_point_reads_answer_as_before(org_a, org_b, alice_client, carol_client):
    mine, theirs = SeriesFactory(organization=org_a, symbol="MINE"), SeriesFactory(organization=org_b)
    for path in ("points", "features"):
        ok = alice_client.get(f"/api/v1/series/{mine.pk}/{path}/")
        assert ok.status_code == 200 and ok.json()["series"] == mine.pk
        assert alice_client.get(f"/api/v1/series/{mine.pk}/{path}/?symbol=MINE").json() == ok.json()
        not_found = alice_client.get(f"/api/v1/series/{theirs.pk}/{path}/")
        assert not_found.status_code == 404
        for pk in ("999999", "abc", "99999999999999999999"):
            response = alice_client.get(f"/api/v1/series/{pk}/{path}/")
            assert (response.status_code, response.json()) == (404, not_found.json())
        assert alice_client.get(f"/api/v1/series/{mine.pk}/{path}/?symbol=OTHER").status_code == 404
        assert carol_client.get(f"/api/v1/series/{mine.pk}/{path}/").json() == not_found.json()
