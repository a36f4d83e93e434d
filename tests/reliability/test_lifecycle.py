"""Deleting a series, a watchlist, a person or a whole organization removes or anonymises exactly
what docs/data-lifecycle.md says, including the store's partitioned tables (not Django models),
and leaves every other organization's data as it was."""

import pytest
from django.apps import apps
from django.db import connection

from accounts.models import AuditEvent, Membership, Organization, Role, User
from alerts.models import Notification
from detection.models import Anomaly, Rule
from tests.conftest import client_for
from tests.factories import AnomalyFactory, MembershipFactory, RuleFactory, SeriesFactory, UserFactory
from tests.reliability.report import record
from watchlists.lifecycle import STORE_TABLES
from watchlists.models import Series, Watchlist, WatchlistItem

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


def store_rows(**where) -> int:
    (column, value), = where.items()
    total = 0
    with connection.cursor() as cursor:
        for table in STORE_TABLES:
            cursor.execute(f"SELECT count(*) FROM {table} WHERE {column} = %s", [value])
            total += cursor.fetchone()[0]
    return total


def tenant_rows(org_id) -> dict[str, int]:
    """Rows of every Django model that carries organization_id, for one organization."""
    counts = {}
    for model in apps.get_models():
        if any(f.name == "organization" for f in model._meta.fields):
            counts[model.__name__] = model._default_manager.filter(organization_id=org_id).count()
    counts["store"] = store_rows(organization_id=org_id)
    return counts


def _populate(org, client):
    """Two series with points (metric and bars), a watchlist, a rule, anomalies."""
    sensor = SeriesFactory(organization=org, symbol="pump-7.temp", kind="metric", exchange="", bar_seconds=None)
    bars = SeriesFactory(organization=org, symbol="IBM", kind="bar", exchange="", bar_seconds=60)
    metric_rows = [{"ts": f"2024-01-02T10:{m:02d}:00Z", "value": m} for m in range(30)]
    bar_rows = [{"ts": f"2024-01-02T10:{m:02d}:00Z", "open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 10}
                for m in range(30)]
    for series, rows in ((sensor, metric_rows), (bars, bar_rows)):
        response = client.post(f"/api/v1/series/{series.pk}/points/", rows, format="json")
        assert response.status_code == 201, response.content
    watchlist = Watchlist.objects.create(organization=org, name="Desk")
    WatchlistItem.objects.create(organization=org, watchlist=watchlist, series=sensor)
    WatchlistItem.objects.create(organization=org, watchlist=watchlist, series=bars)
    rule = RuleFactory(organization=org, series=None, watchlist=watchlist, metrics="value > 100")
    AnomalyFactory(organization=org, series=sensor, rule=rule)
    AnomalyFactory(organization=org, series=bars)
    return sensor, bars, watchlist


@pytest.fixture
def world(alice, carol, org_a, org_b):
    alice_client, carol_client = client_for(alice), client_for(carol)
    a = _populate(org_a, alice_client)
    _populate(org_b, carol_client)
    return {"client": alice_client, "a": a, "org_a": org_a, "org_b": org_b,
            "b_before": tenant_rows(org_b.pk)}


def _untouched(world) -> bool:
    return tenant_rows(world["org_b"].pk) == world["b_before"]


def test_deleting_a_series_removes_its_points_rollups_features_and_anomalies(world):
    sensor, bars, _ = world["a"]
    stored = store_rows(series_id=sensor.pk)
    bars_before = store_rows(series_id=bars.pk)
    response = world["client"].delete(f"/api/v1/series/{sensor.pk}/")
    assert response.status_code == 204
    assert store_rows(series_id=sensor.pk) == 0
    assert not Anomaly.objects.filter(series_id=sensor.pk).exists()
    assert not WatchlistItem.objects.filter(series_id=sensor.pk).exists()
    assert store_rows(series_id=bars.pk) == bars_before and _untouched(world)
    record("Data lifecycle", "Delete a series", removed=f"{stored} store rows, its anomalies and watchlist items",
           kept="the organization's other series", other_tenant_changed=0)


def test_deleting_a_watchlist_keeps_its_series_and_their_points(world):
    sensor, bars, watchlist = world["a"]
    points = store_rows(organization_id=world["org_a"].pk)
    anomalies = Anomaly.objects.filter(organization=world["org_a"]).count()
    assert world["client"].delete(f"/api/v1/watchlists/{watchlist.pk}/").status_code == 204
    assert not WatchlistItem.objects.filter(watchlist_id=watchlist.pk).exists()
    assert not Rule.objects.filter(watchlist_id=watchlist.pk).exists()  # a rule over the watchlist goes with it
    assert Series.objects.filter(pk__in=[sensor.pk, bars.pk]).count() == 2
    assert store_rows(organization_id=world["org_a"].pk) == points
    # Anomalies are history: they stay, no longer linked to the deleted rule.
    assert Anomaly.objects.filter(organization=world["org_a"]).count() == anomalies
    assert _untouched(world)
    record("Data lifecycle", "Delete a watchlist", removed="its items, its rules and alert subscriptions",
           kept=f"series, {points} store rows, {anomalies} anomalies (rule unlinked)", other_tenant_changed=0)


def test_deleting_an_organization_removes_every_row_it_owns(world, alice):
    org = world["org_a"]
    before = tenant_rows(org.pk)
    response = world["client"].delete(f"/api/v1/organizations/{org.pk}/")
    assert response.status_code == 204, response.content
    after = tenant_rows(org.pk)
    assert {name: n for name, n in after.items() if n} == {}
    assert not Organization.objects.filter(pk=org.pk).exists()
    assert User.objects.filter(pk=alice.pk).exists()  # people are not the organization's to delete
    assert _untouched(world)
    record("Data lifecycle", "Delete an organization",
           removed=f"{sum(before.values())} rows ({before['store']} in the store) across "
                   f"{sum(1 for n in before.values() if n)} tables", left_behind=sum(after.values()),
           other_tenant_changed=0)


def test_an_admin_cannot_delete_the_organization(world, org_a):
    admin = UserFactory()
    MembershipFactory(user=admin, organization=org_a, role=Role.ADMIN)
    response = client_for(admin).delete(f"/api/v1/organizations/{org_a.pk}/")
    assert response.status_code == 403 and Organization.objects.filter(pk=org_a.pk).exists()


def test_deleting_a_person_anonymises_shared_records_and_drops_solo_organizations(world, org_a, alice):
    # dave: owns a solo organization, is an admin of org A, and received alert emails there.
    dave = UserFactory(email="dave@example.com")
    MembershipFactory(user=dave, organization=org_a, role=Role.ADMIN)
    dave_client = client_for(dave)
    solo = dave_client.post("/api/v1/organizations/", {"name": "Dave's lab"}, format="json").json()
    key = dave_client.post("/api/v1/api-keys/", {"name": "ci key"}, format="json",
                           headers={"X-Organization": str(org_a.pk)}).json()
    Notification.objects.create(organization=org_a, idempotency_key="n-dave", user=dave, channel="email",
                                email="dave@example.com", due_at="2024-01-01T00:00:00Z")
    solo_series = SeriesFactory(organization_id=solo["id"], kind="metric", exchange="", bar_seconds=None)
    dave_client.post(f"/api/v1/series/{solo_series.pk}/points/", [{"ts": "2024-01-02T10:00:00Z", "value": 1}],
                     format="json", headers={"X-Organization": str(solo["id"])})
    assert store_rows(organization_id=solo["id"]) == 1

    wrong = dave_client.delete("/api/v1/me/", {"password": "not-my-password"}, format="json")
    response = dave_client.delete("/api/v1/me/", {"password": PASSWORD}, format="json")
    assert wrong.status_code == 400 and response.status_code == 204, response.content

    assert not User.objects.filter(email="dave@example.com").exists()
    assert not Organization.objects.filter(pk=solo["id"]).exists() and store_rows(organization_id=solo["id"]) == 0
    assert Organization.objects.filter(pk=org_a.pk).exists()
    # Shared records stay without the person: the key they made, the log, the delivery record.
    assert org_a.api_keys.filter(pk=key["id"], created_by__isnull=True).exists()
    assert not AuditEvent.objects.filter(actor_label__icontains="dave").exists()
    assert not AuditEvent.objects.filter(target_label__icontains="dave").exists()
    assert AuditEvent.objects.filter(organization=org_a, action="api_key.created",
                                     actor_label__startswith="deleted user").exists()
    assert Notification.objects.get(idempotency_key="n-dave").email == ""
    assert dave_client.get("/api/v1/me/").status_code in (401, 403)  # the session died with the account
    assert _untouched(world)
    record("Data lifecycle", "Delete a person (DELETE /api/v1/me/)",
           removed="account, memberships, solo organization with its points",
           anonymised="audit events, delivery log address; keys/rules keep a null author", other_tenant_changed=0)


def test_the_last_owner_of_a_shared_organization_must_hand_over_first(world, alice, bob, org_a):
    response = client_for(alice).delete("/api/v1/me/", {"password": PASSWORD}, format="json")
    assert response.status_code == 409 and "last owner" in response.json()["error"]["message"]
    assert User.objects.filter(pk=alice.pk).exists() and Membership.objects.filter(user=alice).exists()


def test_an_api_key_cannot_delete_a_person(key_client, alice):
    response = key_client("admin").delete("/api/v1/me/", {"password": PASSWORD}, format="json")
    assert response.status_code == 403 and User.objects.filter(pk=alice.pk).exists()
