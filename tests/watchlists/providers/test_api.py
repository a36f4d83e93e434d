"""Provider API: write-only encrypted credentials, test connection, links with their errors, backfills."""

from datetime import date

import pytest
from django.test import override_settings

from watchlists.providers import crypto
from watchlists.providers.models import Backfill, ProviderCredential

from .conftest import bar_times
from .fakes import FakePolygon, session_minutes

pytestmark = pytest.mark.django_db
URL = "/api/v1/provider-credentials/"


def results(body):
    return body["results"] if isinstance(body, dict) and "results" in body else body


def test_a_key_is_encrypted_at_rest_and_never_returned(alice_client, org_a):
    response = alice_client.post(URL, {"provider": "polygon", "secret": "pk_live_123456"}, format="json")
    assert response.status_code == 201, response.content
    assert "pk_live_123456" not in response.content.decode() and "secret" not in response.json()
    assert response.json()["configured"] is True
    stored = ProviderCredential.objects.get(organization=org_a)
    assert "pk_live_123456" not in stored.secret_encrypted
    assert crypto.decrypt(stored.secret_encrypted) == "pk_live_123456"
    listed = alice_client.get(URL).content.decode()
    detail = alice_client.get(f"{URL}{stored.pk}/").content.decode()
    assert "pk_live" not in listed and "pk_live" not in detail and stored.secret_encrypted not in detail
    assert alice_client.post(URL, {"provider": "replay", "secret": "x"}, format="json").status_code == 400


def test_setting_it_again_replaces_it(alice_client, org_a):
    first = alice_client.post(URL, {"provider": "polygon", "secret": "one"}, format="json").json()
    alice_client.patch(f"{URL}{first['id']}/", {"secret": "two"}, format="json")
    alice_client.post(URL, {"provider": "polygon", "secret": "three"}, format="json")
    (cred,) = ProviderCredential.objects.filter(organization=org_a)
    assert crypto.decrypt(cred.secret_encrypted) == "three"


def test_viewers_cannot_set_or_test_keys(bob_client, alice_client):
    assert bob_client.post(URL, {"provider": "polygon", "secret": "x"}, format="json").status_code == 403
    cred = alice_client.post(URL, {"provider": "polygon", "secret": "x"}, format="json").json()
    assert bob_client.post(f"{URL}{cred['id']}/test/").status_code == 403


def test_test_connection_reports_success_and_failure(alice_client, fake_polygon):
    good = alice_client.post(URL, {"provider": "polygon", "secret": FakePolygon.API_KEY}, format="json").json()
    answer = alice_client.post(f"{URL}{good['id']}/test/").json()
    assert answer["ok"] is True and answer["error"] == ""
    alice_client.patch(f"{URL}{good['id']}/", {"secret": "wrong-key"}, format="json")
    answer = alice_client.post(f"{URL}{good['id']}/test/").json()
    assert answer["ok"] is False and "Unknown API Key" in answer["error"] and "wrong-key" not in answer["error"]
    assert alice_client.get(f"{URL}{good['id']}/").json()["last_test_ok"] is False


def test_the_key_derived_from_secret_key_and_an_explicit_key_both_work():
    token = crypto.encrypt("s3cret")
    assert crypto.decrypt(token) == "s3cret"
    explicit = crypto.Fernet.generate_key().decode()
    with override_settings(CREDENTIALS_KEY=explicit):
        assert crypto.decrypt(crypto.encrypt("s3cret")) == "s3cret"
        with pytest.raises(crypto.CredentialUnreadable):
            crypto.decrypt(token)  # written under the derived key
    with override_settings(CREDENTIALS_KEY=f"{explicit},{crypto.derive_key('test-secret-key-not-for-production-0123456789abcdef').decode()}"):
        assert crypto.decrypt(token) == "s3cret"  # rotation: old key still decrypts


def test_connecting_a_series_and_its_validation(alice_client, aapl, org_a):
    response = alice_client.post("/api/v1/series-providers/", {"series": aapl.pk, "provider": "alphavantage"},
                                 format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["symbol"] == "AAPL" and body["last_error"] == "" and body["last_session"] is None
    from tests.factories import SeriesFactory

    metric = SeriesFactory(organization=org_a, symbol="temp", kind="metric", exchange="", bar_seconds=None)
    bad = alice_client.post("/api/v1/series-providers/", {"series": metric.pk, "provider": "polygon"}, format="json")
    assert bad.status_code == 400 and "exchange" in bad.json()["error"]["message"]


def test_another_orgs_series_cannot_be_connected(carol_client, aapl):
    response = carol_client.post("/api/v1/series-providers/", {"series": aapl.pk, "provider": "polygon"}, format="json")
    assert response.status_code == 400


def test_backfill_action_runs_and_resumes(alice_client, actor, pg_link, fake_polygon,
                                         django_capture_on_commit_callbacks):
    for d in (date(2024, 3, 11), date(2024, 3, 12)):
        fake_polygon.add_minutes("AAPL", session_minutes(d))
    url = f"/api/v1/series-providers/{pg_link.pk}/backfill/"
    with django_capture_on_commit_callbacks(execute=True):
        response = alice_client.post(url, {"start": "2024-03-09", "end": "2024-03-12"}, format="json")
    assert response.status_code == 202, response.content
    backfill = Backfill.objects.get(pk=response.json()["id"])  # tasks are eager in tests
    assert backfill.status == "done" and backfill.done_until == date(2024, 3, 12) and backfill.rows_stored == 780
    # Saturday and Sunday were never asked for; each day is 960 bars with extended hours: 2 pages of 500.
    assert len(fake_polygon.requests) == 4
    with django_capture_on_commit_callbacks(execute=True):
        again = alice_client.post(url, {"start": "2024-03-09", "end": "2024-03-12"}, format="json").json()
    assert again["id"] == backfill.pk and len(fake_polygon.requests) == 4
    assert len(bar_times(pg_link.series_id)) == 780
    listed = results(alice_client.get("/api/v1/backfills/").json())
    assert [b["id"] for b in listed] == [backfill.pk]
    bad = alice_client.post(url, {"start": "2024-03-12", "end": "2024-03-01"}, format="json")
    assert bad.status_code == 400


def test_a_malformed_payload_shows_as_a_provider_error_on_the_series(alice_client, fake_polygon, actor, pg_link,
                                                                     aapl, org_a, django_assert_max_num_queries):
    from tests.factories import SeriesFactory
    from watchlists.providers import services
    from watchlists.providers.base import MalformedPayload
    from watchlists.providers.polygon import Polygon

    day = date(2024, 3, 12)
    fake_polygon.page_size = 100
    fake_polygon.add_minutes("AAPL", session_minutes(day))
    fake_polygon.malformed_pages = {1}
    with pytest.raises(MalformedPayload):
        services.import_range(actor=actor, link=pg_link, start=day, end=day,
                              provider=Polygon(api_key=FakePolygon.API_KEY, sleep=lambda s: None))
    assert bar_times(aapl.pk) == []  # page 0 was fine and is not stored either
    shown = alice_client.get(f"/api/v1/series/{aapl.pk}/").json()["provider"]
    assert shown["provider"] == "polygon" and shown["last_error_at"]
    assert shown["last_error"].startswith("Polygon aggregates: 1 result(s) lack t/o/h/l/c/v")
    for i in range(5):
        SeriesFactory(organization=org_a, symbol=f"UPL{i}")
    with django_assert_max_num_queries(6):  # the links of a page come in one query, not one per series
        listed = results(alice_client.get("/api/v1/series/").json())
    assert {s["symbol"]: s["provider"] and s["provider"]["provider"] for s in listed}["UPL0"] is None
