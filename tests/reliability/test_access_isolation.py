"""The cross-tenant walkers over REST, GraphQL and WebSockets, run for the report: a second
organization's owner (session and admin API key) calls every route, field and socket against
organization A's objects. The walkers themselves are tests/tenancy_walker.py, tests/graphql/walker.py
and tests/test_cross_tenant_ws.py (which also run on their own in `make test`)."""

import pytest

from accounts.services import create_api_key
from accounts.tenancy import actor_for_user
from anomalyhub.routing import websocket_urlpatterns
from tests.conftest import client_for
from tests.graphql.conftest import key_client as graphql_key_client
from tests.graphql.conftest import session_client
from tests.graphql.walker import EXEMPT as GRAPHQL_EXEMPT
from tests.graphql.walker import root_fields, walk_graphql_as_other_tenant
from tests.reliability.report import record
from tests.tenancy_walker import EXEMPT as REST_EXEMPT
from tests.tenancy_walker import api_routes, walk_as_other_tenant
from tests.test_cross_tenant_ws import CHECKS, two_tenants


@pytest.mark.django_db
def test_rest_walker_finds_no_cross_tenant_read_or_write(carol, org_b, org_a, alice):
    from rest_framework.test import APIClient

    _, raw = create_api_key(actor=actor_for_user(carol, org_b.pk), name="walker", scope="admin")
    key = APIClient()
    key.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    problems = walk_as_other_tenant(client_for(carol), org_a) + walk_as_other_tenant(key, org_a)
    routes = len(api_routes())
    record("Isolation and access", "Cross-tenant walker: every REST route (session and admin key)",
           outcome=f"{routes} routes walked ({len(REST_EXEMPT)} exempt with a reason)",
           cross_tenant_reads=len(problems))
    assert problems == []


@pytest.mark.django_db
def test_graphql_walker_finds_no_cross_tenant_read_or_write(carol, org_b, org_a, alice):
    problems = (walk_graphql_as_other_tenant(session_client(carol), org_a)
                + walk_graphql_as_other_tenant(graphql_key_client(carol, org_b, "admin"), org_a))
    record("Isolation and access", "Cross-tenant walker: every GraphQL query and mutation (session and admin key)",
           outcome=f"{len(root_fields())} root fields walked ({len(GRAPHQL_EXEMPT)} exempt with a reason)",
           cross_tenant_reads=len(problems))
    assert problems == []


@pytest.mark.django_db(transaction=True)
@pytest.mark.redis
async def test_websocket_routes_keep_organizations_apart(clean_store):
    routes = sorted(str(p.pattern) for p in websocket_urlpatterns)
    assert set(routes) <= set(CHECKS)
    for route in routes:
        await CHECKS[route]("/" + route, await two_tenants())
    record("Isolation and access", "Cross-tenant: every WebSocket route (live feed, GraphQL subscriptions)",
           outcome=f"{len(routes)} routes: anonymous refused, other org's series/watchlist not_found",
           cross_tenant_reads=0)
