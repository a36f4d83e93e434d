"""Runs the graphql/ isolation check with the same two tenants as tests/test_cross_tenant_ws.py."""

import pytest

from tests.test_cross_tenant_ws import two_tenants

from .ws_isolation import check_graphql

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


async def test_graphql_socket_keeps_organizations_apart(clean_store):
    await check_graphql("/graphql/", await two_tenants())
