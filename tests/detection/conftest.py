import pytest

from tests.factories import SeriesFactory

# Seed 002, Example 1: readings every millisecond from 2018.10.08T01:01:01.002.
EXAMPLE_TEMPS = [59, 66, 57, 60, 63, 51, 53, 52, 56, 55]
EXAMPLE_POINTS = [{"ts": f"2018-10-08T01:01:01.{2 + i:03d}Z", "value": v} for i, v in enumerate(EXAMPLE_TEMPS)]
EXAMPLE_EXPECTED = [
    ("2018-10-08T01:01:01.003000Z", 0, "value > 65"),
    ("2018-10-08T01:01:01.003000Z", 1, "value > percentile(value, 75)"),
    ("2018-10-08T01:01:01.005000Z", 1, "value > percentile(value, 75)"),
    ("2018-10-08T01:01:01.006000Z", 1, "value > percentile(value, 75)"),
]


@pytest.fixture
def sensor(org_a):
    return SeriesFactory(organization=org_a, symbol="sensor", kind="metric", exchange="", bar_seconds=None)


@pytest.fixture
def example_rule(alice_client, sensor):
    r = alice_client.post("/api/v1/rules/", {"name": "temp", "metrics": "value > 65; value > percentile(value, 75)",
                                              "window_size": 6, "step": 3, "series": sensor.pk}, format="json")
    assert r.status_code == 201, r.content
    return r.json()


@pytest.fixture
def ingest(alice_client, django_capture_on_commit_callbacks):
    """Ingests over REST and runs the after-commit work (detection, rollups) as production does."""

    def send(series, rows):
        with django_capture_on_commit_callbacks(execute=True):
            r = alice_client.post(f"/api/v1/series/{series.pk}/points/", rows, format="json")
        assert r.status_code in (200, 201), r.content

    return send
