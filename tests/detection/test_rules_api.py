"""Rules over REST: validation, live anomalies through the pipeline, backtests, stats, feedback."""

import pytest

from detection import pipeline
from detection.models import Anomaly
from tests.detection.conftest import EXAMPLE_EXPECTED, EXAMPLE_POINTS

pytestmark = pytest.mark.django_db


def _anomalies(client, **query):
    rows = client.get("/api/v1/anomalies/", query).json()["results"]
    return sorted((a["ts"].replace("+00:00", "Z"), a["metric_index"], a["text"]) for a in rows)


def _iso(ts: str) -> str:
    return ts.replace("+00:00", "Z") if "." in ts else ts.replace("+00:00", ".000000Z")


def test_seed_example_1_through_ingest_and_the_pipeline(alice_client, example_rule, sensor, ingest):
    ingest(sensor, EXAMPLE_POINTS)
    got = sorted((_iso(a["ts"]), a["metric_index"], a["text"])
                 for a in alice_client.get("/api/v1/anomalies/").json()["results"])
    assert got == EXAMPLE_EXPECTED


def test_streaming_in_small_batches_equals_one_batch_and_the_backtest(alice_client, example_rule, sensor, ingest,
                                                                     settings):
    settings.DETECTION_SNAPSHOT_INTERVAL = 2  # a snapshot every 2 messages: many restores
    for i in range(0, len(EXAMPLE_POINTS), 3):
        ingest(sensor, EXAMPLE_POINTS[i:i + 3])
    got = sorted((_iso(a["ts"]), a["metric_index"], a["text"])
                 for a in alice_client.get("/api/v1/anomalies/").json()["results"])
    assert got == EXAMPLE_EXPECTED
    r = alice_client.post(f"/api/v1/rules/{example_rule['id']}/backtest/",
                          {"start": "2018-10-08T00:00:00Z", "end": "2018-10-09T00:00:00Z"}, format="json")
    assert r.status_code == 200, r.content
    backtest = sorted((_iso(a["ts"]), a["metric_index"], a["text"]) for a in r.json()["anomalies"])
    assert backtest == EXAMPLE_EXPECTED and r.json()["rows_processed"] == 10


def test_reprocessing_writes_each_anomaly_once(example_rule, sensor, ingest):
    ingest(sensor, EXAMPLE_POINTS)
    assert pipeline.run_series(sensor.pk, sensor.organization_id) == 0
    from detection.models import DetectionCursor

    DetectionCursor.objects.filter(series=sensor).update(last_msg_id=-1)
    from detection.models import RuleState

    RuleState.objects.all().delete()
    pipeline.run_series(sensor.pk, sensor.organization_id)
    assert Anomaly.objects.filter(series=sensor).count() == 4


def test_backtest_stores_nothing_and_dry_run_needs_no_saved_rule(alice_client, sensor, ingest):
    ingest(sensor, EXAMPLE_POINTS)  # no rule yet: nothing detected
    body = {"name": "draft", "metrics": "value > 65", "series": sensor.pk,
            "start": "2018-10-08T00:00:00Z", "end": "2018-10-09T00:00:00Z"}
    r = alice_client.post("/api/v1/rules/backtest/", body, format="json")
    assert r.status_code == 200, r.content
    assert r.json()["count"] == 1 and Anomaly.objects.count() == 0


@pytest.mark.parametrize("metrics, field, position", [
    ("value >", "metrics", 7),
    ("price > 3", "metrics", 0),
    ("vlaue > 3", "metrics", 0),
    ("avg(value) > 3", "metrics", 0),
    ("value + 1", "metrics", None),
    ("nosuch(value) > 1", "metrics", 0),
])
def test_invalid_rules_name_the_problem_and_position(alice_client, sensor, metrics, field, position):
    r = alice_client.post("/api/v1/rules/", {"name": "x", "metrics": metrics, "series": sensor.pk}, format="json")
    assert r.status_code == 400, r.content
    err = r.json()["error"]
    assert err["code"] == "invalid_rule" and field in err["details"], err
    if position is not None:
        assert err["details"][field][0]["position"] == position, err


def test_rule_targets_exactly_one_own_series_or_watchlist(alice_client, carol, sensor):
    from tests.factories import SeriesFactory

    foreign = SeriesFactory(organization=carol.memberships.first().organization)
    r = alice_client.post("/api/v1/rules/", {"name": "x", "metrics": "value > 1", "series": foreign.pk}, format="json")
    assert r.status_code == 400 and "series" in r.json()["error"]["details"]
    r = alice_client.post("/api/v1/rules/", {"name": "x", "metrics": "value > 1"}, format="json")
    assert r.status_code == 400


def test_watchlist_rule_runs_on_every_series_with_aligned_windows(alice_client, org_a, ingest):
    from tests.factories import SeriesFactory

    a = SeriesFactory(organization=org_a, symbol="A", kind="metric", exchange="", bar_seconds=None)
    b = SeriesFactory(organization=org_a, symbol="B", kind="metric", exchange="", bar_seconds=None)
    wl = alice_client.post("/api/v1/watchlists/", {"name": "sensors", "series": [a.pk, b.pk]}, format="json").json()
    rule = alice_client.post("/api/v1/rules/", {"name": "w", "metrics": "value > percentile(value, 75)",
                                                "window_size": 6, "step": 3, "watchlist": wl["id"]},
                             format="json").json()
    ingest(a, EXAMPLE_POINTS)
    ingest(b, EXAMPLE_POINTS)
    per_series = {s: len(_anomalies(alice_client, series=s)) for s in (a.pk, b.pk)}
    assert per_series == {a.pk: 3, b.pk: 3}
    stats = alice_client.get(f"/api/v1/rules/{rule['id']}/stats/").json()
    assert stats["numGroups"] == 2 and stats["numRows"] == 20 and stats["status"] == "OK"
    origins = {v["windowOrigin"] for v in stats["series"].values()}
    assert len(origins) == 1  # every key shares the window grid


def test_stats_follow_the_seed_fields(alice_client, example_rule, sensor, ingest):
    ingest(sensor, EXAMPLE_POINTS)
    stats = alice_client.get(f"/api/v1/rules/{example_rule['id']}/stats/").json()
    for field in ("status", "lastErrMsg", "numGroups", "numRows", "numMetrics", "snapshotMsgId",
                  "snapshotTimestamp", "memoryUsed"):
        assert field in stats
    assert stats["numRows"] == 10 and stats["numMetrics"] == 2 and stats["snapshotMsgId"] > 0


def test_editing_a_rule_resets_its_state(alice_client, example_rule, sensor, ingest):
    ingest(sensor, EXAMPLE_POINTS)
    r = alice_client.patch(f"/api/v1/rules/{example_rule['id']}/", {"metrics": "value > 60"}, format="json")
    assert r.status_code == 200, r.content
    assert alice_client.get(f"/api/v1/rules/{example_rule['id']}/stats/").json()["numGroups"] == 0


def test_feedback_labels_and_filters(alice_client, bob_client, example_rule, sensor, ingest):
    ingest(sensor, EXAMPLE_POINTS)
    first = alice_client.get("/api/v1/anomalies/").json()["results"][0]
    assert bob_client.post(f"/api/v1/anomalies/{first['id']}/feedback/", {"label": "false_alarm"},
                           format="json").status_code == 403
    r = alice_client.post(f"/api/v1/anomalies/{first['id']}/feedback/", {"label": "false_alarm"}, format="json")
    assert r.status_code == 200 and r.json()["feedback"] == "false_alarm"
    assert r.json() == alice_client.get(f"/api/v1/anomalies/{first['id']}/").json()
    assert r.json()["symbol"] == first["symbol"] and first["symbol"]
    assert len(_anomalies(alice_client, feedback="false_alarm")) == 1
    assert len(_anomalies(alice_client, feedback="none")) == 3
    assert len(_anomalies(alice_client, source="rule")) == 4
    bad = alice_client.post(f"/api/v1/anomalies/{first['id']}/feedback/", {"label": "meh"}, format="json")
    assert bad.status_code == 400


def test_viewer_cannot_create_rules(bob_client, sensor):
    r = bob_client.post("/api/v1/rules/", {"name": "x", "metrics": "value > 1", "series": sensor.pk}, format="json")
    assert r.status_code == 403
