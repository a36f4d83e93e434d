"""The exported schema, the safety limits, the error format and the constant query count."""

from pathlib import Path

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from strawberry.printer import print_schema

from anomalyhub.schema import MAX_ALIASES, MAX_DEPTH, schema
from tests.factories import AnomalyFactory, SeriesFactory, WatchlistFactory
from watchlists.models import WatchlistItem

from .conftest import codes, key_client

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schema.graphql"
EXPORT = ".venv/bin/python manage.py export_schema anomalyhub.schema:schema --path schema.graphql"


def test_schema_file_matches_the_code():
    assert SCHEMA_FILE.read_text(encoding="utf-8") == print_schema(schema), \
        f"schema.graphql is out of date; regenerate it with: {EXPORT}"


def test_every_model_type_scopes_its_rows():
    """Discovered from the schema: every type over a model has a get_queryset, and every type over
    a tenant model (organization_id on each row) scopes through TenantScoped."""
    from accounts.graphql.base import TenantScoped

    from .walker import models_by_type_name

    types = models_by_type_name()
    assert {"AnomalyType", "SeriesType", "WatchlistType", "ApiKeyType"} <= set(types)
    for name, model in types.items():
        origin = schema.get_type_by_name(name).origin
        assert "get_queryset" in vars(origin) or issubclass(origin, TenantScoped), name
        if any(f.name == "organization" for f in model._meta.fields):
            assert issubclass(origin, TenantScoped), f"{name} must scope with TenantScoped"


@pytest.mark.django_db
def test_a_query_deeper_than_the_limit_is_refused_with_a_code(alice_gql):
    nested = "series { watchlists { " * 5 + "id" + " } }" * 5
    body = alice_gql(f"{{ anomalyList {{ results {{ {nested} }} }} }}")
    assert "query_too_deep" in codes(body) and body["data"] is None  # (and too costly: lists nest 5 deep)
    assert f"maximum operation depth of {MAX_DEPTH}" in body["errors"][0]["message"]


@pytest.mark.django_db
def test_too_many_aliases_are_refused(alice_gql):
    aliases = " ".join(f"a{i}: me {{ role }}" for i in range(MAX_ALIASES + 1))
    body = alice_gql(f"{{ {aliases} }}")
    assert codes(body) == ["too_many_aliases"]


@pytest.mark.django_db
def test_an_oversized_document_is_refused(alice_gql):
    body = alice_gql("{ " + " ".join(["__typename"] * 5000) + " }")
    assert codes(body) == ["query_too_large"]


@pytest.mark.django_db
def test_errors_carry_codes_and_never_a_traceback(alice_gql, org_a, monkeypatch):
    from watchlists.graphql import types

    def broken(self):
        raise RuntimeError("secret internals at /srv/app.py line 3")

    monkeypatch.setattr(types, "series_timezone", broken)
    SeriesFactory(organization=org_a)
    body = alice_gql("{ seriesList { results { timezone } } }")
    assert codes(body) == ["server_error"]
    assert "secret" not in str(body) and "Traceback" not in str(body)
    bad = alice_gql("{ nope }")
    assert codes(bad) == ["graphql_validation_failed"]
    syntax = alice_gql("{ me ")
    assert codes(syntax) == ["graphql_parse_failed"]


def _anomalies(org, n):
    series = [SeriesFactory(organization=org) for _ in range(5)]
    watchlists = [WatchlistFactory(organization=org) for _ in range(3)]
    for i, s in enumerate(series):
        WatchlistItem.objects.create(organization=org, watchlist=watchlists[i % 3], series=s)
    for i in range(n):
        AnomalyFactory(organization=org, series=series[i % 5], source=f"rule:{i}")


QUERY = """{ anomalyList(pagination: {limit: 100}) { totalCount results {
  id ts text severity series { id symbol watchlists { id name } } } } }"""


@pytest.mark.django_db
@pytest.mark.parametrize("n", [10, 100])
def test_100_anomalies_with_series_and_watchlists_take_a_constant_number_of_queries(n, alice, org_a):
    _anomalies(org_a, n)
    gql = key_client(alice, org_a, "read")
    gql.data("{ me { role } }")  # warm up: the key's last_used_at is written once a minute
    with CaptureQueriesContext(connection) as queries:
        data = gql.data(QUERY)
    assert len(data["anomalyList"]["results"]) == n
    assert all(r["series"]["watchlists"] for r in data["anomalyList"]["results"])
    # count, anomalies, their series, the series' watchlists: the same for 10 or 100 (the key was
    # resolved by the warm-up and is remembered for API_KEY_CACHE_SECONDS).
    assert len(queries) == 4, [q["sql"] for q in queries]
