"""Bounds every request path shares: JSON nesting (REST, GraphQL, sign-in) and list offsets. Each
is one mechanism (anomalyhub.lib.jsonbody, anomalyhub.lib.pagination), so the tests walk every route."""

import json

import pytest
from django.core.cache import cache
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomalyhub.lib import jsonbody
from anomalyhub.lib.parsers import JSONParser
from tests.factories import SeriesFactory
from tests.graphql.conftest import session_client
from tests.tenancy_walker import api_routes

pytestmark = pytest.mark.django_db
PROPERTY = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
LIMIT = 64


def nested(opens: list[bool], leaf: str = "1") -> str:
    """JSON nesting len(opens) levels: True an array, False an object."""
    return "".join("[" if a else '{"k":' for a in opens) + leaf + "".join("]" if a else "}" for a in reversed(opens))


NESTINGS = st.one_of(st.lists(st.booleans(), min_size=1, max_size=LIMIT + 40),
                     st.integers(LIMIT + 1, 60_000).map(lambda n: [True] * n))


@given(opens=NESTINGS, in_string=st.booleans())
@PROPERTY
def test_the_json_reader_reads_up_to_the_depth_limit_and_refuses_deeper(opens, in_string):
    text = nested(opens)
    if in_string:  # brackets inside a string are not nesting
        text = json.dumps({"s": "[" * 5000, "v": json.loads(text) if len(opens) < LIMIT else None})
        assert jsonbody.loads(text)["s"] == "[" * 5000
        return
    if len(opens) <= LIMIT:
        assert jsonbody.loads(text) == json.loads(text)
    else:
        with pytest.raises(jsonbody.JSONBodyError, match=f"deeper than {LIMIT} levels"):
            jsonbody.loads(text)


def test_the_json_reader_refuses_what_is_not_json():
    with pytest.raises(jsonbody.JSONBodyError):
        jsonbody.loads(b'{"nan": NaN}', parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))


def test_every_rest_route_reads_json_through_the_bounded_parser():
    unbounded = []
    for route in api_routes():
        cls = getattr(route.callback, "cls", None) or getattr(route.callback, "view_class", None)
        for parser in getattr(cls, "parser_classes", []):
            if "json" in (parser.media_type or "") and not issubclass(parser, JSONParser):
                unbounded.append((route.name, parser))
    assert not unbounded, unbounded


def _assert_error_shape(response, status=400):
    assert response.status_code == status, (response.status_code, response.content[:300])
    error = response.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["message"], error
    return error


@given(opens=NESTINGS)
@PROPERTY
def test_any_nesting_is_answered_never_a_500_on_the_json_endpoints(alice_client, alice, org_a, opens):
    cache.clear()  # the sign-in throttle (20/min) answers 429 before reading the body
    series = SeriesFactory(organization=org_a, kind="metric", exchange="", bar_seconds=None)
    body = nested(opens)
    for url in ("/api/v1/auth/login/", "/api/v1/series/", "/api/v1/ingest/", f"/api/v1/series/{series.pk}/points/",
                "/api/v1/watchlists/", f"/api/v1/organizations/{org_a.pk}/"):
        client = Client() if "auth" in url else alice_client
        method = client.patch if "organizations" in url else client.post
        response = method(url, data=body, content_type="application/json")
        assert response.status_code < 500, (url, response.content[:300])
        if len(opens) > LIMIT:
            error = _assert_error_shape(response)
            assert error["code"] == "malformed_request" and f"deeper than {LIMIT}" in error["message"], error
    graphql = session_client(alice).client.post("/graphql/", data=body, content_type="application/json")
    assert graphql.status_code < 500, graphql.content[:300]
    if len(opens) > LIMIT:
        assert graphql.status_code == 400
        assert f"deeper than {LIMIT}" in graphql.json()["errors"][0]["message"]


def test_deep_graphql_variables_are_refused(alice):
    variables = json.loads(nested([False] * (LIMIT + 1)))
    body = json.dumps({"query": "query($v: JSON) { me { role } }", "variables": {"v": variables}})
    response = session_client(alice).client.post("/graphql/", data=body, content_type="application/json")
    assert response.status_code == 400 and response.json()["errors"][0]["extensions"]["code"] == "bad_request"


def _list_routes():
    return [r for r in api_routes() if r.name.endswith("-list") and not r.kwargs]


def test_an_offset_past_the_limit_is_a_400_on_every_list(alice_client):
    routes = _list_routes()
    assert len(routes) > 10, [r.name for r in routes]
    for route in routes:
        path = "/" + route.regex.replace("\\", "")
        for offset in ("99999999999999999999", "1000001"):
            response = alice_client.get(f"{path}?offset={offset}")
            if response.status_code == 403:  # organization-wide admin lists: not this member's
                continue
            error = _assert_error_shape(response)
            assert "offset" in error["details"], (path, error)
        assert alice_client.get(f"{path}?offset=1000000").status_code in (200, 403), path
