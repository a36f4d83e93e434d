"""Tenant isolation across every GraphQL query and mutation field, discovered from the schema."""

import pytest
from graphql import GraphQLID, GraphQLNonNull

from tests.factories import SeriesFactory

from .conftest import key_client, session_client
from .walker import EXEMPT, Walk, root_fields, walk_graphql_as_other_tenant

pytestmark = pytest.mark.django_db


def test_every_graphql_field_hides_other_tenants_objects(carol, org_a, alice):
    assert walk_graphql_as_other_tenant(session_client(carol), org_a) == []


def test_every_graphql_field_hides_other_tenants_objects_from_api_keys(carol, org_b, org_a, alice):
    assert walk_graphql_as_other_tenant(key_client(carol, org_b, "admin"), org_a) == []


def test_walker_discovers_every_root_field():
    names = {name for _, name, _ in root_fields()}
    assert {"anomalyList", "seriesList", "points", "createRule", "labelAnomaly", "revokeApiKey"} <= names
    assert set(EXEMPT) <= names, set(EXEMPT) - names


def test_walker_catches_an_unscoped_resolver(carol, org_a, alice, monkeypatch):
    """Proof the walker bites: with SeriesType's scoping switched off, seriesList and series leak."""
    from watchlists.graphql.types import SeriesType

    monkeypatch.setattr(SeriesType, "get_queryset", classmethod(lambda cls, qs, info, **kw: qs.order_by("pk")))
    problems = walk_graphql_as_other_tenant(session_client(carol), org_a)
    assert any("seriesList lists another organization" in p for p in problems), problems
    assert any("query series answered" in p for p in problems), problems


def test_walker_reports_arguments_it_cannot_fill(org_a):
    with pytest.raises(LookupError):
        Walk(org_a).value("id", GraphQLNonNull(GraphQLID), None, {}, False)


def test_nested_relations_are_scoped_too(carol, org_b, org_a, alice):
    """A watchlist of org B that (by a bug) held org A's series must not reveal it."""
    from watchlists.models import Watchlist, WatchlistItem

    mine = Watchlist.objects.create(organization=org_b, name="mine")
    WatchlistItem.objects.create(organization=org_b, watchlist=mine, series=SeriesFactory(organization=org_a))
    body = session_client(carol)("{ watchlistList { results { name series { id symbol } } } }")
    assert body["data"]["watchlistList"]["results"] == [{"name": "mine", "series": []}]


def test_anonymous_requests_are_refused(client):
    response = client.post("/graphql/", data={"query": "{ me { role } }"}, content_type="application/json")
    assert response.status_code == 401 and response.json()["errors"][0]["extensions"]["code"] == "not_authenticated"
