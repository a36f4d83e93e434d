"""GraphQL test helpers: a client per fixture user and `gql(client, query, **variables)`."""

import json

import pytest
from django.test import Client

from accounts.services import create_api_key
from accounts.tenancy import actor_for_user


class GraphQLClient:
    """Posts operations to /graphql/ as a signed-in user or with an API key."""

    def __init__(self, client: Client, headers: dict | None = None):
        self.client = client
        self.headers = headers or {}

    def raw(self, query: str, variables: dict | None = None, **extra):
        return self.client.post("/graphql/", data=json.dumps({"query": query, "variables": variables or {}}),
                                content_type="application/json", headers={**self.headers, **extra})

    def __call__(self, query: str, **variables) -> dict:
        response = self.raw(query, variables)
        assert response.status_code == 200, response.content
        return response.json()

    def data(self, query: str, **variables) -> dict:
        body = self(query, **variables)
        assert not body.get("errors"), body["errors"]
        return body["data"]


def session_client(user) -> GraphQLClient:
    client = Client()
    client.force_login(user)
    return GraphQLClient(client)


def key_client(user, org, scope="admin") -> GraphQLClient:
    _, raw = create_api_key(actor=actor_for_user(user, org.pk), name=f"gql {scope}", scope=scope)
    return GraphQLClient(Client(), {"Authorization": f"Bearer {raw}"})


@pytest.fixture
def alice_gql(alice):
    return session_client(alice)


@pytest.fixture
def bob_gql(bob):
    return session_client(bob)


@pytest.fixture
def carol_gql(carol):
    return session_client(carol)


def codes(body: dict) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors") or []]
