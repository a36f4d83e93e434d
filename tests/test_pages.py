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
