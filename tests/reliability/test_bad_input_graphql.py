"""GraphQL receives malformed, deep and huge queries: each is refused with a documented error code,
never a server error, and stores nothing."""

import json
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from anomalyhub.schema import MAX_ALIASES, MAX_DEPTH, MAX_TOKENS
from tests.graphql.conftest import session_client
from tests.reliability.report import record
from watchlists.models import Watchlist

pytestmark = pytest.mark.django_db


def _deep(levels: int) -> str:
    inner = "id"
    for _ in range(levels):
        inner = f"watchlists {{ {inner} }}"
    return f"{{ seriesList {{ results {{ {inner} }} }} }}"


CASES = {
    "syntax error": ("{ seriesList { results { id }", "graphql_parse_failed"),
    "empty selection set": ("{ me { } }", "graphql_parse_failed"),
    "unknown field": ("{ nope }", None),
    "wrong argument type": ('{ series(id: {a: 1}) { id } }', None),
    f"deeper than {MAX_DEPTH}": (_deep(MAX_DEPTH + 5), "query_too_deep"),
    f"more than {MAX_ALIASES} aliases": ("{ " + " ".join(f"a{i}: me {{ role }}" for i in range(MAX_ALIASES + 5))
                                         + " }", "too_many_aliases"),
    f"more than {MAX_TOKENS} tokens": ("{ " + "me { role } " * (MAX_TOKENS // 3) + "}", "query_too_large"),
    "mutation with a 1 MB name": ('mutation { createWatchlist(input: {name: "' + "x" * 1_000_000 + '"}) '
                                  "{ __typename } }", None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_queries_get_a_documented_error_and_change_nothing(alice, org_a, case):
    query, code = CASES[case]
    client = session_client(alice)
    before = Watchlist.objects.count()
    response = client.raw(query)
    assert response.status_code < 500, response.content[:300]
    body = response.json()
    errors = body.get("errors") or []
    data = body.get("data") or {}
    refused = bool(errors) or (isinstance(data.get("createWatchlist"), dict)
                               and data["createWatchlist"].get("__typename") == "InputError")
    assert refused, body
    got = [e.get("extensions", {}).get("code") for e in errors]
    if code:
        assert code in got, body
    assert all(e.get("message") for e in errors)
    assert "server_error" not in got, body
    assert Watchlist.objects.count() == before
    record("Bad input", f"GraphQL: {case}", outcome=f"{response.status_code} "
           + (", ".join(str(c or "validation error") for c in got) or data["createWatchlist"]["__typename"]),
           stored_changed=0)


@pytest.mark.parametrize("body", ["not json", "[]", '{"query": 5}', '{"query": "{ me { role } }", "variables": 7}'])
def test_malformed_request_bodies_are_4xx(alice, body):
    client = session_client(alice)
    response = client.client.post("/graphql/", data=body, content_type="application/json")
    assert 400 <= response.status_code < 500, (response.status_code, response.content[:200])
    error = response.json()["errors"][0]
    assert error["extensions"]["code"] == "bad_request" and error["message"]


def test_fuzzed_query_text_never_breaks_the_server(alice, org_a):
    client = session_client(alice)
    before = Watchlist.objects.count()
    seen = Counter()
    tokens = ["{", "}", "(", ")", "query", "mutation", "me", "role", "seriesList", "results", "id", "...", "on",
              "fragment", "$x", ":", "ID!", "@include(if: true)", '"', "\\u0000", "#", "1e999", "createWatchlist",
              "input:", "name:", "__schema", "__typename", "alias:", ",", "\n"]

    @settings(max_examples=150, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
    @given(st.lists(st.sampled_from(tokens), max_size=40).map(" ".join))
    def run(query):
        response = client.raw(query)
        seen[response.status_code] += 1
        assert response.status_code < 500, response.content[:300]
        body = json.loads(response.content)
        for error in body.get("errors") or []:
            assert error["extensions"].get("code") != "server_error", error

    run()
    assert Watchlist.objects.count() == before
    record("Bad input", "GraphQL: fuzzed query text (hypothesis)", requests=sum(seen.values()),
           outcome=", ".join(f"{k}×{v}" for k, v in sorted(seen.items())), stored_changed=0, server_errors=0)


def test_a_body_over_the_limit_is_413_before_parsing(alice, org_a, settings):
    client = session_client(alice)
    before = Watchlist.objects.count()
    padding = "#" * (settings.API_MAX_BODY_BYTES + 1)  # a GraphQL comment: valid, just too big
    response = client.raw(f'mutation {{ createWatchlist(input: {{name: "big"}}) {{ __typename }} }}\n{padding}')
    assert response.status_code == 413 and response.json()["error"]["code"] == "payload_too_large"
    assert Watchlist.objects.count() == before
    record("Bad input", f"GraphQL: body over API_MAX_BODY_BYTES ({settings.API_MAX_BODY_BYTES})",
           outcome="413 payload_too_large", stored_changed=0)
