"""The signed-in pages show the organization's real data, and only its own."""

import json

import pytest

from tests.detection.conftest import EXAMPLE_TEMPS
from tests.factories import SeriesFactory

# Seed 002's readings, one a minute, so the 1-minute chart has a line to draw.
POINTS = [{"ts": f"2018-10-08T01:{i:02d}:00Z", "value": v} for i, v in enumerate(EXAMPLE_TEMPS)]

pytestmark = pytest.mark.django_db


@pytest.fixture
def sensor_with_data(org_a, alice_client, django_capture_on_commit_callbacks):
    sensor = SeriesFactory(organization=org_a, symbol="boiler", kind="metric", exchange="", bar_seconds=None)
    alice_client.post("/api/v1/rules/", {"name": "hot", "metrics": "value > 65", "series": sensor.pk}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(f"/api/v1/series/{sensor.pk}/points/", POINTS, format="json")
    return sensor


def test_home_lists_series_with_last_value_and_sparkline(alice_client, sensor_with_data):
    html = alice_client.get("/").content.decode()
    assert "boiler" in html and "55.00" in html and 'class="spark"' in html


def test_series_page_draws_the_chart_with_anomaly_markers(alice_client, sensor_with_data):
    response = alice_client.get(f"/series/{sensor_with_data.pk}/")
    html = response.content.decode()
    data = json.loads(html.split('<script id="chart-data" type="application/json">')[1].split("</script>")[0])
    assert 'id="chart"' in html and len(data["bars"]["time"]) == len(data["bars"]["close"]) > 0
    assert [(a["text"], a["severity"]) for a in data["anomalies"]] == [("value > 65", "medium")]


def test_series_page_of_another_org_is_404(carol_client, sensor_with_data):
    assert carol_client.get(f"/series/{sensor_with_data.pk}/").status_code == 404


def test_demo_setup_loads_real_data_once(db):
    from django.core.management import call_command

    from watchlists.models import Series

    call_command("demo_setup", verbosity=0)
    call_command("demo_setup", verbosity=0)
    symbols = sorted(Series.objects.filter(organization__name="Demo").values_list("symbol", flat=True))
    assert symbols == ["AIG", "BAC", "IBM", "SPY", "SPY.live"]
    from detection.models import Rule

    assert Rule.objects.filter(series__symbol="SPY.live", enabled=True).count() == 1
    from tests.watchlists.conftest import count_rows

    spy = Series.objects.get(organization__name="Demo", symbol="SPY")
    assert count_rows("watchlists_tick", spy.pk) == 250_601


def test_series_page_with_less_than_a_minute_of_data_still_renders(alice_client, org_a,
                                                                   django_capture_on_commit_callbacks):
    from tests.detection.conftest import EXAMPLE_POINTS

    sensor = SeriesFactory(organization=org_a, symbol="dense", kind="metric", exchange="", bar_seconds=None)
    alice_client.post("/api/v1/rules/", {"name": "hot", "metrics": "value > 65", "series": sensor.pk}, format="json")
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(f"/api/v1/series/{sensor.pk}/points/", EXAMPLE_POINTS, format="json")
    response = alice_client.get(f"/series/{sensor.pk}/")
    assert response.status_code == 200 and "value &gt; 65" in response.content.decode()


@pytest.fixture
def org_a_objects(org_a, alice):
    from tests.alerts.factories import endpoint_for, subscription_for
    from tests.factories import AnomalyFactory, RuleFactory, WatchlistFactory

    series = SeriesFactory(organization=org_a, symbol="ZQXSPY", kind="trade")
    watchlist = WatchlistFactory(organization=org_a, name="Index ETFs")
    watchlist.items.create(organization=org_a, series=series)
    return {"series": series, "watchlist": watchlist, "rule": RuleFactory(organization=org_a, series=series,
                                                                           metrics="price > 1"),
            "anomaly": AnomalyFactory(organization=org_a, series=series, text="price > 1", severity="high"),
            "subscription": subscription_for(org_a, alice, target="series", series=series),
            "webhook": endpoint_for(org_a), **_detector_objects(org_a)}


def _detector_objects(org):
    from detection.models import TrainingRun
    from tests.factories import model_version_for

    version = model_version_for(org)
    run = TrainingRun.objects.create(organization=org, detector=version.detector, status="running", progress=0.4)
    return {"detector": version.detector, "version": version, "run": run}


def _pages(o):
    return [f"/watchlists/{o['watchlist'].pk}/", f"/watchlists/{o['watchlist'].pk}/edit/",
            f"/series/{o['series'].pk}/replay/", f"/anomalies/{o['anomaly'].pk}/", f"/rules/{o['rule'].pk}/",
            f"/alerts/{o['subscription'].pk}/", f"/detectors/{o['detector'].pk}/",
            f"/detectors/{o['detector'].pk}/evaluation/", f"/detectors/{o['detector'].pk}/runs/{o['run'].pk}/"]


def _posts(o):
    return [(f"/anomalies/{o['anomaly'].pk}/feedback/", {"label": "false_alarm"}),
            (f"/series/{o['series'].pk}/replay/", {"file": "spy-ticks", "speed": "60"}),
            (f"/watchlists/{o['watchlist'].pk}/delete/", {}), (f"/rules/{o['rule'].pk}/toggle/", {}),
            (f"/alerts/{o['subscription'].pk}/delete/", {}), (f"/alerts/webhooks/{o['webhook'].pk}/test/", {}),
            (f"/alerts/webhooks/{o['webhook'].pk}/delete/", {}), (f"/detectors/{o['detector'].pk}/train/", {}),
            (f"/detectors/{o['detector'].pk}/versions/{o['version'].pk}/activate/", {})]


def test_every_page_of_an_object_renders_for_its_organization(alice_client, org_a_objects):
    for url in _pages(org_a_objects):
        assert alice_client.get(url).status_code == 200, url
    for url in ("/", "/watchlists/new/", "/rules/", "/rules/new/", "/alerts/", "/alerts/new/", "/alerts/webhooks/",
                "/alerts/deliveries/", "/detectors/", "/anomalies/"):
        assert alice_client.get(url).status_code == 200, url


def test_pages_and_actions_on_another_orgs_objects_are_404(carol_client, org_a_objects):
    for url in _pages(org_a_objects):
        assert carol_client.get(url).status_code == 404, url
    for url, data in _posts(org_a_objects):
        assert carol_client.post(url, data).status_code == 404, url
    from detection.models import Anomaly, Rule

    assert Anomaly.objects.get().feedback == "" and Rule.objects.get().enabled
    from detection.models import TrainingRun

    assert TrainingRun.objects.count() == 1


def test_another_orgs_objects_are_not_offered_as_targets(carol_client, org_a_objects):
    for url in ("/rules/new/", "/alerts/new/", "/", "/rules/", "/alerts/", "/alerts/webhooks/", "/detectors/",
                "/anomalies/", f"/anomalies/?series={org_a_objects['series'].pk}"):
        html = carol_client.get(url).content.decode()
        assert "ZQXSPY" not in html and "Index ETFs" not in html and "127.0.0.1:9" not in html, url
    r = carol_client.post("/rules/new/", {"name": "x", "metrics": "price > 1", "severity": "low",
                                          "target": f"series:{org_a_objects['series'].pk}"})
    from detection.models import Rule

    assert r.status_code == 200 and not Rule.objects.filter(name="x").exists()


def test_watchlist_form_creates_unknown_symbols_and_lists_them(alice_client, org_a):
    r = alice_client.post("/watchlists/new/", {"name": "Tech", "symbols": "aapl, MSFT aapl", "kind": "bar",
                                               "exchange": "XNAS"})
    from watchlists.models import Watchlist

    wl = Watchlist.objects.get(name="Tech")
    assert r.status_code == 302 and r["Location"] == f"/watchlists/{wl.pk}/"
    assert sorted(wl.series.values_list("symbol", "kind", "exchange")) == [("AAPL", "bar", "XNAS"),
                                                                         ("MSFT", "bar", "XNAS")]
    html = alice_client.get(f"/watchlists/{wl.pk}/").content.decode()
    assert "AAPL" in html and "MSFT" in html and 'data-anomaly-count' in html


def test_anomaly_feedback_buttons_label_the_anomaly(alice_client, org_a_objects):
    anomaly = org_a_objects["anomaly"]
    r = alice_client.post(f"/anomalies/{anomaly.pk}/feedback/", {"label": "false_alarm"})
    assert r.status_code == 302
    anomaly.refresh_from_db()
    assert anomaly.feedback == "false_alarm"
    assert "False Alarm" in alice_client.get(f"/anomalies/{anomaly.pk}/").content.decode()


def test_viewer_sees_no_feedback_buttons_and_cannot_label(bob_client, org_a_objects):
    anomaly = org_a_objects["anomaly"]
    assert "False positive" not in bob_client.get(f"/anomalies/{anomaly.pk}/").content.decode()
    bob_client.post(f"/anomalies/{anomaly.pk}/feedback/", {"label": "false_alarm"})
    anomaly.refresh_from_db()
    assert anomaly.feedback == ""


def test_rule_validation_reports_the_error_position(alice_client, org_a_objects):
    target = f"series:{org_a_objects['series'].pk}"
    bad = alice_client.post("/rules/validate/", {"metrics": "price >> 1", "target": target}).json()
    assert bad["ok"] is False and isinstance(bad["errors"][0]["position"], int)
    good = alice_client.post("/rules/validate/", {"metrics": "size >= 10000", "target": target}).json()
    assert good == {"ok": True, "columns": ["price", "size"]}


def test_email_subscription_form_saves_for_the_signed_in_user(alice_client, alice, org_a_objects):
    series = org_a_objects["series"]
    r = alice_client.post("/alerts/new/", {"name": "mine", "target": f"series:{series.pk}", "min_severity": "low",
                                           "email": "on", "webhook": "", "cooldown_seconds": "0", "enabled": "on"})
    assert r.status_code == 302
    from alerts.models import AlertSubscription

    sub = AlertSubscription.objects.get(name="mine")
    assert (sub.user, sub.series, sub.channels, sub.target) == (alice, series, ["email"], "series")


def test_signup_and_login_pages_use_the_site_layout(client, db):
    for url in ("/accounts/signup/", "/accounts/login/", "/accounts/password/reset/"):
        html = client.get(url).content.decode()
        assert 'class="topbar"' in html and 'class="card auth"' in html and "<label" in html, url


def test_detector_page_shows_runs_versions_and_queues_training(alice_client, org_a):
    from detection.models import TrainingRun

    objects = _detector_objects(org_a)
    detector = objects["detector"]
    html = alice_client.get(f"/detectors/{detector.pk}/").content.decode()
    assert "v1" in html and "data-poll-url" in html and "Train now" in html
    progress = alice_client.get(f"/detectors/{detector.pk}/runs/{objects['run'].pk}/").json()
    assert progress == {"status": "running", "progress": 0.4, "message": ""}
    # One run at a time per detector: the running one is returned rather than a second queued.
    alice_client.post(f"/detectors/{detector.pk}/train/")
    assert TrainingRun.objects.filter(detector=detector).count() == 1


def test_detectors_page_creates_a_detector_on_a_bar_series(alice_client, org_a):
    series = SeriesFactory(organization=org_a, symbol="IBM", kind="bar")
    r = alice_client.post("/detectors/", {"series": series.pk, "kind": "robust_zscore", "threshold": "0.5",
                                          "severity": "medium"})
    from detection.models import Detector

    detector = Detector.objects.get()
    assert r.status_code == 302 and r["Location"] == f"/detectors/{detector.pk}/" and detector.series == series


def test_rule_preview_backtests_the_unsaved_rule_on_the_chart(alice_client, sensor_with_data):
    from detection.models import Rule

    body = {"name": "", "metrics": "value > 60", "target": f"series:{sensor_with_data.pk}", "severity": "high"}
    result = alice_client.post("/rules/preview/", body).json()
    assert result["ok"] and result["symbol"] == "boiler" and result["count"] > 1
    assert len(result["chart"]["anomalies"]) == result["count"] and result["chart"]["bars"]["time"]
    assert {a["text"] for a in result["chart"]["anomalies"]} == {"value > 60"}
    assert Rule.objects.count() == 1  # only the fixture's rule: previews store nothing


def test_rule_preview_of_another_orgs_series_is_404(carol_client, sensor_with_data):
    body = {"metrics": "value > 60", "target": f"series:{sensor_with_data.pk}", "severity": "high"}
    response = carol_client.post("/rules/preview/", body)
    assert response.status_code == 200 and response.json()["ok"] is False  # not offered as a target at all


def test_members_page_invites_and_changes_roles(alice_client, alice, bob, org_a, mailoutbox):
    from accounts.models import Invitation, Membership

    html = alice_client.get("/settings/members/").content.decode()
    assert "alice@example.com" in html and "bob@example.com" in html
    alice_client.post("/settings/members/", {"email": "dave@example.com", "role": "member"})
    assert Invitation.objects.get().email == "dave@example.com"
    bob_membership = Membership.objects.get(user=bob)
    alice_client.post(f"/settings/members/{bob_membership.pk}/role/", {"role": "admin"})
    bob_membership.refresh_from_db()
    assert bob_membership.role == "admin"


def test_member_and_key_actions_on_another_org_are_404(carol_client, alice, org_a):
    from accounts.models import ApiKey, Membership
    from accounts.services import create_api_key
    from accounts.tenancy import actor_for_user

    key, _ = create_api_key(actor=actor_for_user(alice, org_a.pk), name="k")
    membership = Membership.objects.get(user=alice)
    assert carol_client.post(f"/settings/members/{membership.pk}/role/", {"role": "viewer"}).status_code == 404
    assert carol_client.post(f"/settings/members/{membership.pk}/remove/").status_code == 404
    assert carol_client.post(f"/settings/api-keys/{key.pk}/revoke/").status_code == 404
    assert Membership.objects.get(user=alice).role == "owner" and ApiKey.objects.get().revoked_at is None


def test_series_page_time_range_coarsens_the_resolution_to_fit(alice_client, sensor_with_data):
    html = alice_client.get(f"/series/{sensor_with_data.pk}/?range=30d&resolution=1m").content.decode()
    data = json.loads(html.split('<script id="chart-data" type="application/json">')[1].split("</script>")[0])
    assert data["resolution"] == "1h" and 'href="?range=30d&amp;resolution=1h" aria-current="page"' in html
    assert [a["text"] for a in data["anomalies"]] == ["value > 65"]


def test_replay_of_an_unknown_file_or_speed_is_refused_with_a_message(alice_client, org_a_objects):
    series = org_a_objects["series"]
    for body in ({"file": "nope", "speed": "60"}, {"file": "spy-ticks", "speed": "7"}):
        r = alice_client.post(f"/series/{series.pk}/replay/", body, follow=True)
        assert "Choose a demo file and a speed." in r.content.decode()
    assert alice_client.get(f"/series/{series.pk}/replay/").json()["state"] == "idle"


def test_admins_download_their_organizations_data_from_the_settings_page(alice_client, bob_client, sensor_with_data):
    """The REST export, offered where an admin looks for it; a viewer (bob) is not offered it."""
    import re

    html = alice_client.get("/settings/members/").content.decode()
    links = [link.replace("&amp;", "&") for link in re.findall(r'href="(/api/v1/export/\?[^"]+)"', html)]
    assert len(links) == 6 and links[0] == "/api/v1/export/?dataset=points&file_format=csv"
    response = alice_client.get(links[0])
    assert response.status_code == 200 and "attachment" in response["Content-Disposition"]
    rows = b"".join(response.streaming_content).decode().splitlines()
    assert rows[0].startswith("symbol,kind,ts,") and len(rows) == 1 + len(POINTS)
    assert all(row.startswith("boiler,metric,2018-10-08T01:") for row in rows[1:])
    anomalies = alice_client.get(links[3])  # anomalies as JSON
    assert {a["symbol"] for a in json.loads(b"".join(anomalies.streaming_content))} == {"boiler"}
    assert "/api/v1/export/" not in bob_client.get("/settings/members/").content.decode()


def test_anomalies_page_lists_filters_and_pages_the_organizations_anomalies(alice_client, org_a, carol_client):
    from datetime import UTC, datetime, timedelta

    from tests.factories import AnomalyFactory

    spy = SeriesFactory(organization=org_a, symbol="SPY", kind="bar", exchange="XNYS", bar_seconds=60)
    other = SeriesFactory(organization=org_a, symbol="IBM", kind="bar", exchange="XNYS", bar_seconds=60)
    first = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)  # 09:30 in New York
    for i in range(60):
        AnomalyFactory(organization=org_a, series=spy, ts=first + timedelta(minutes=i), severity="high",
                       text="volume > 3 * med(volume)", observed={"volume": 251288.0, "med(volume)": 17950.0})
    AnomalyFactory(organization=org_a, series=other, ts=first, severity="low")
    html = alice_client.get("/anomalies/").content.decode()
    assert 'href="/anomalies/"' in html  # in the main navigation
    assert "61 anomalies" in html and "page 1 of 2" in html
    assert "volume 251,288 is 14× the median 17,950" in html
    assert "2013-10-07 10:29:00" in html  # newest first, in exchange time
    filtered = alice_client.get("/anomalies/", {"series": other.pk}).content.decode()
    assert "1 anomaly match" in filtered and "IBM" in filtered and "251,288" not in filtered
    high = alice_client.get("/anomalies/", {"severity": "low"}).content.decode()
    assert "1 anomaly match" in high
    page2 = alice_client.get("/anomalies/", {"page": 2}).content.decode()
    assert "2013-10-07 09:30:00" in page2 and "page 2 of 2" in page2
    assert "SPY" not in carol_client.get("/anomalies/").content.decode()
    assert "No anomalies" in carol_client.get("/anomalies/").content.decode()


def test_dashboard_counts_the_latest_session_not_the_wall_clock(alice_client, org_a, django_capture_on_commit_callbacks):
    from datetime import UTC, datetime, timedelta

    from tests.factories import AnomalyFactory

    spy = SeriesFactory(organization=org_a, symbol="SPY", kind="metric", exchange="XNYS", bar_seconds=None)
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(f"/api/v1/series/{spy.pk}/points/", [{"ts": "2014-03-05T20:00:00Z", "value": 1.0}],
                          format="json")
    for day, minute in ((4, 0), (5, 0), (5, 1)):
        AnomalyFactory(organization=org_a, series=spy, ts=datetime(2014, 3, day, 15, tzinfo=UTC) + timedelta(
            minutes=minute))
    html = alice_client.get("/").content.decode()
    assert f'data-anomaly-count="{spy.pk}"' in html
    count = html.split(f'data-anomaly-count="{spy.pk}"')[1].split(">")[1].split("<")[0]
    assert count == "2"  # the two of 2014-03-05, the data's last day, though "today" has none
    assert "/anomalies/?series=" in html and "start=2014-03-05T00%3A00%3A00-05%3A00" in html


def test_signup_confirmation_pages_say_what_happened_and_what_to_do_next(client, db, mailoutbox):
    import re

    r = client.post("/accounts/signup/", {"email": "newcomer@example.com", "password1": "a-long-secret-42",
                                          "password2": "a-long-secret-42"}, follow=True)
    sent = r.content.decode()
    assert "Check your email" in sent and "cannot sign in until" in sent and "spam folder" in sent
    assert "contact us" not in sent  # there is no one to contact from this page

    key = re.search(r"/accounts/confirm-email/([^/\s]+)/", mailoutbox[0].body).group(1)
    page = client.get(f"/accounts/confirm-email/{key}/").content.decode()
    assert "Confirm your email to finish signing up" in page and "newcomer@example.com" in page
    assert "for user" not in page  # allauth's default names the user by the same address twice
    assert "name your organization" in page and "Didn't sign up?" in page

    dead = client.get("/accounts/confirm-email/not-a-key/").content.decode()
    assert "This confirmation link no longer works" in dead and "send you a fresh link" in dead
    assert "/accounts/login/" in dead and "/accounts/email/" not in dead  # that page needs a session a newcomer lacks


def test_anomalies_page_shows_close_anomalies_of_one_series_and_source_as_one_incident(alice_client, org_a):
    import re
    from datetime import UTC, datetime, timedelta

    from tests.factories import AnomalyFactory

    spy = SeriesFactory(organization=org_a, symbol="SPY", kind="bar", exchange="XNYS", bar_seconds=60)
    ibm = SeriesFactory(organization=org_a, symbol="IBM", kind="bar", exchange="XNYS", bar_seconds=60)
    open_ = datetime(2013, 10, 7, 13, 30, tzinfo=UTC)  # 09:30 in New York
    for minute in (0, 1, 2, 60, 61):  # a burst at the open, another an hour later
        AnomalyFactory(organization=org_a, series=spy, ts=open_ + timedelta(minutes=minute), source="rule:1",
                       severity="critical" if minute == 1 else "low")
    AnomalyFactory(organization=org_a, series=spy, ts=open_ + timedelta(minutes=1), source="rule:2")  # another rule
    AnomalyFactory(organization=org_a, series=ibm, ts=open_ + timedelta(minutes=1), source="rule:1")  # another series
    html = alice_client.get("/anomalies/").content.decode()

    headings = re.findall(r'<tr class="incident"><th[^>]*>(.*?)</th></tr>', html, re.S)
    assert len(headings) == 2, headings  # the two bursts; the lone anomalies are not incidents
    assert "2 anomalies, 2013-10-07 10:30:00 – 10:31:00" in headings[0]  # newest incident first
    assert "3 anomalies, 2013-10-07 09:30:00 – 09:32:00" in headings[1] and "highest" in headings[1]
    assert 'badge critical' in headings[1] and "exchange time, America/New_York" in headings[1]
    assert html.count('class="in-incident"') == 5 and html.count("data-anomaly=") == 7
    assert "shown together as one incident" in html and "5 minutes" in html


def test_market_chart_marks_extended_hours_and_pages_say_whether_rules_run_on_them(
        alice_client, org_a, django_capture_on_commit_callbacks):
    import re

    from tests.factories import DetectorFactory

    spy = SeriesFactory(organization=org_a, symbol="SPY", kind="bar", exchange="XNYS", bar_seconds=60)
    bar = {"open": 1, "high": 2, "low": 0.5, "close": 1.5, "volume": 10}
    # An upload keeps what is sent: 08:00 pre-market, the 09:30 and 09:31 regular bars, 16:30 after-hours.
    points = [{"ts": ts, **bar} for ts in ("2023-08-03T12:00:00Z", "2023-08-03T13:30:00Z", "2023-08-03T13:31:00Z",
                                            "2023-08-03T20:30:00Z")]
    with django_capture_on_commit_callbacks(execute=True):
        r = alice_client.post(f"/api/v1/series/{spy.pk}/points/", points, format="json")
    assert r.status_code in (200, 201, 202), r.content
    html = alice_client.get(f"/series/{spy.pk}/").content.decode()
    chart = json.loads(re.search(r'<script id="chart-data" type="application/json">(.*?)</script>', html, re.S)
                       .group(1))
    assert chart["bars"]["session"] == [0, 1, 1, 0]
    assert "Regular session 09:30–16:00 America/New_York" in html and "Grey columns" in html

    sensor = SeriesFactory(organization=org_a, symbol="boiler", kind="metric", exchange="", bar_seconds=None)
    assert "session" not in alice_client.get(f"/series/{sensor.pk}/", {"format": "chart"}).json()["bars"]

    alice_client.post("/api/v1/rules/", {"name": "loud", "metrics": "volume > 5", "series": spy.pk}, format="json")
    from detection.models import Rule

    rule = Rule.objects.get(name="loud")
    form = alice_client.get(f"/rules/{rule.pk}/").content.decode()
    assert "Extended hours:" in form and "regular session only (09:30–16:00 America/New_York)" in form
    assert "pre-market and after-hours included" in form
    detector = DetectorFactory(organization=org_a, series=spy)
    page = alice_client.get(f"/detectors/{detector.pk}/").content.decode()
    assert "The detector trains on and scores every point stored for SPY" in page and "09:30–16:00" in page


def test_metric_series_show_in_the_viewers_time_zone_market_series_and_the_api_stay(
        alice_client, alice, org_a, sensor_with_data):
    from detection.models import Anomaly

    anomaly = Anomaly.objects.filter(series=sensor_with_data).order_by("ts").first()
    assert anomaly is not None and anomaly.ts.hour == 1  # 01:xx UTC
    before = alice_client.get("/anomalies/").content.decode()
    assert anomaly.ts.strftime("%Y-%m-%d %H:%M:%S") in before  # UTC unless the viewer chooses

    r = alice_client.post("/settings/time-zone/", {"time_zone": "Nowhere/Atlantis"})
    assert r.status_code == 200 and "Select a valid choice" in r.content.decode()
    r = alice_client.post("/settings/time-zone/", {"time_zone": "Europe/Berlin"})
    assert r.status_code == 302
    alice.refresh_from_db()
    assert alice.time_zone == "Europe/Berlin"

    berlin = anomaly.ts.replace(hour=3).strftime("%Y-%m-%d %H:%M:%S")  # CEST, UTC+2 in October 2018
    assert berlin in alice_client.get("/anomalies/").content.decode()
    page = alice_client.get(f"/series/{sensor_with_data.pk}/").content.decode()
    assert "times in your time, Europe/Berlin" in page
    assert alice_client.get(f"/series/{sensor_with_data.pk}/", {"format": "chart"}).json()["tz"] == "Europe/Berlin"
    spy = SeriesFactory(organization=org_a, symbol="SPY", kind="bar", exchange="XNYS", bar_seconds=60)
    assert "exchange time, America/New_York" in alice_client.get(f"/series/{spy.pk}/").content.decode()
    api = alice_client.get(f"/api/v1/anomalies/{anomaly.pk}/").json()
    assert api["ts"].endswith("Z") or api["ts"].endswith("+00:00")  # the API stays UTC

    alice.time_zone = "Not/AZone"  # the API stores any string; pages fall back to UTC
    alice.save()
    assert "times in UTC" in alice_client.get(f"/series/{sensor_with_data.pk}/").content.decode()
