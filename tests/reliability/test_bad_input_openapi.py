"""Schemathesis against the OpenAPI document of every REST endpoint, in process (WSGI).

Requests authenticate as a real organization's owner, through an admin API key (the widest scope a
program can hold). Each operation must answer without a 500, every documented response must match
its schema, and every error must be the documented {"error": {code, message, details}} body.
The quick run draws a few examples per operation (`make test`); the `slow` twin draws many more.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from rest_framework.throttling import ScopedRateThrottle
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from accounts.models import Role
from accounts.services import create_api_key
from accounts.tenancy import actor_for_user
from tests.factories import MembershipFactory, OrganizationFactory, RuleFactory, SeriesFactory, UserFactory
from tests.reliability.report import record

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", get_wsgi_application())
OPERATIONS = sum(1 for _ in schema.get_all_operations())
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
QUICK = settings(max_examples=6, deadline=None, derandomize=True, database=None,
                 suppress_health_check=list(HealthCheck))
# CI (`make test-slow` from .ci/run) replays a fixed set so a landing is never blocked by a new random
# draw; FUZZ_EXPLORE=1 explores fresh inputs (what to run by hand after changing an endpoint).
THOROUGH = settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck),
                    derandomize=os.environ.get("FUZZ_EXPLORE") != "1")
# One-click links from notifications answer a browser with a page (?format=html) as documented.
HTML_PAGES = ("/alerts/links/{token}/",)
# Statuses seen per operation, for the report row written by the last test of the module.
_seen: dict[str, Counter] = {}
_seconds: Counter = Counter()


@pytest.fixture
def owner_key(db, settings, monkeypatch):
    """A real organization with an owner, some data, and an admin key; outside services point at a
    closed local port so no fuzzed request can reach the internet."""
    for name in ("ALPHAVANTAGE_BASE_URL", "POLYGON_BASE_URL", "SENDGRID_API_URL"):
        setattr(settings, name, "http://127.0.0.1:9")
    # Rate limits would turn most of the fuzz into 429s; they have their own tests (test_access_guards).
    monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", {"auth": "100000/min", "api": "100000/min"})
    settings.BRUTEFORCE_LIMITS = {"login": (10**6, 60), "api-key": (10**6, 60)}
    org = OrganizationFactory(name="Fuzzed")
    owner = UserFactory(email="owner@fuzz.example")
    MembershipFactory(user=owner, organization=org, role=Role.OWNER)
    series = SeriesFactory(organization=org, symbol="FUZZ", kind="metric", exchange="", bar_seconds=None)
    RuleFactory(organization=org, series=series, metrics="value > 1")
    _, raw = create_api_key(actor=actor_for_user(owner, org.pk), name="fuzz", scope="admin")
    # Django's test client keeps the test's transaction open across requests the same way.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield raw
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


def _assert_documented_error(response, case) -> None:
    if not 400 <= response.status_code < 500:
        return
    content_type = {k.lower(): str(v) for k, v in response.headers.items()}.get("content-type", "")
    if case.path.endswith(HTML_PAGES) and "html" in content_type:
        return  # a person followed an emailed link with a browser: they get a page, not JSON
    body = json.loads(response.content or b"{}")
    assert set(body.get("error", {})) == {"code", "message", "details"}, (
        f"{case.method} {case.formatted_path} answered {response.status_code} without the error body: "
        f"{response.content[:300]!r}")


def _exercise(case, owner_key) -> None:
    started = time.perf_counter()
    response = case.call(headers={"Authorization": f"Bearer {owner_key}"})
    _seconds[f"{case.method} {case.path}"] += time.perf_counter() - started
    _seen.setdefault(f"{case.method} {case.path}", Counter())[response.status_code] += 1
    case.validate_response(response, checks=CHECKS)
    _assert_documented_error(response, case)


@schema.parametrize()
@QUICK
def test_every_operation_answers_without_500_and_within_its_schema(case, owner_key):
    _exercise(case, owner_key)


@pytest.mark.slow
@schema.parametrize()
@THOROUGH
def test_every_operation_answers_without_500_and_within_its_schema_thoroughly(case, owner_key):
    _exercise(case, owner_key)


def test_report_openapi_fuzz():
    """Writes the summary row: operations walked, requests sent, status classes seen, 500s."""
    if not _seen:
        pytest.skip("the fuzz did not run in this session")
    statuses = Counter()
    for counter in _seen.values():
        statuses.update(counter)
    server_errors = sum(n for code, n in statuses.items() if code >= 500)
    record("Bad input", "REST: schemathesis over every OpenAPI operation (owner's admin key)",
           operations=OPERATIONS, requests=sum(statuses.values()),
           outcome=", ".join(f"{code}×{n}" for code, n in sorted(statuses.items())),
           server_errors=server_errors, stored_changed="n/a (valid writes allowed)",
           slowest=", ".join(f"{op} {sec:.1f}s" for op, sec in _seconds.most_common(3)))
    assert server_errors == 0
