"""Parsed documents and validations are remembered per query text (strawberry's ParserCache and
ValidationCache in anomalyhub.schema): a repeated query answers as the first did, and a refused one
is refused again, with the same errors."""

from unittest import mock

import strawberry.schema.schema as strawberry_schema

from anomalyhub.schema import MAX_DEPTH

from .conftest import codes


def _validations(client, query: str, times: int) -> tuple[list[dict], int]:
    with mock.patch.object(strawberry_schema, "validate", wraps=strawberry_schema.validate) as validate:
        bodies = [client(query) for _ in range(times)]
    return bodies, validate.call_count


def test_a_repeated_query_is_validated_once_and_answers_the_same(alice_gql, org_a):
    query = "{ me { organization { id name } } documentCacheTest: __typename }"  # a text no other test sends
    bodies, validations = _validations(alice_gql, query, 3)
    assert validations == 1
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["data"]["me"]["organization"]["name"] == "Org A"


def test_a_refused_query_is_refused_every_time_with_its_errors(alice_gql):
    too_deep = "{ seriesList { results { " + "watchlists { " * MAX_DEPTH + "id" + " }" * (MAX_DEPTH + 2) + " }"
    for query, code in ((too_deep, "query_too_deep"), ("{ me { documentCacheTest: noSuchField } }",
                                                                          "graphql_validation_failed")):
        bodies, validations = _validations(alice_gql, query, 3)
        assert validations == 1
        assert bodies[0] == bodies[1] == bodies[2]
        assert bodies[0]["data"] is None and code in codes(bodies[0]), bodies[0]
