"""A detector's events and their precision / recall from the organization's labels
(detection.services.evaluation), over REST, GraphQL and the detector's evaluation page."""

from datetime import UTC, datetime, timedelta

import pytest

from detection.models import Anomaly
from detection.services.evaluation import evaluate_detector
from tests.factories import DetectorFactory, RuleFactory, SeriesFactory
from tests.graphql.conftest import session_client

pytestmark = pytest.mark.django_db
T0 = datetime(2024, 3, 4, 10, 0, tzinfo=UTC)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.fixture
def labelled(org_a):
    """Four events of one detector (gap: 5 minutes on a metric series) and two incidents people
    confirmed on the series, one of them raised only by a rule."""
    series = SeriesFactory(organization=org_a, symbol="LOAD", kind="metric", exchange="", bar_seconds=None,
                           last_point_at=_at(600))
    detector = DetectorFactory(organization=org_a, series=series, kind="isolation_forest")
    rule = RuleFactory(organization=org_a, series=series)

    def anomaly(minutes, feedback="", source=None, score=0.7):
        return Anomaly.objects.create(
            organization=org_a, series=series, ts=_at(minutes), source=source or f"detector:{detector.pk}",
            detector=None if source else detector, rule=rule if source else None, text="x", score=score,
            feedback=feedback)

    first = anomaly(0)
    anomaly(1, "confirmed", score=0.9)
    anomaly(2)  # event 1: real
    anomaly(60, "false_alarm")  # event 2: noise
    anomaly(120), anomaly(124)  # event 3: 4 minutes apart, one event, unlabelled
    anomaly(180, "expected"), anomaly(181)  # event 4: noise
    anomaly(0.5, "confirmed", source=f"rule:{rule.pk}")  # the same incident as event 1
    anomaly(300, "new_trend", source=f"rule:{rule.pk}")  # an incident the detector missed
    return detector, first


def test_events_merge_anomalies_and_labels_give_precision_and_recall(labelled):
    detector, first = labelled
    result = evaluate_detector(detector)
    spans = [(e["start"], e["end"], e["points"], e["verdict"]) for e in result["events"]]
    assert spans == [(_at(180), _at(181), 2, "false"), (_at(120), _at(124), 2, "unlabelled"),
                     (_at(60), _at(60), 1, "false"), (_at(0), _at(2), 3, "true")]
    assert result["events"][-1]["anomaly_id"] == first.pk and result["events"][-1]["max_score"] == 0.9
    assert (result["true_events"], result["labelled_events"], result["precision"]) == (1, 3, 1 / 3)
    assert (result["incidents_found"], result["incidents"], result["recall"]) == (1, 2, 0.5)
    assert result["anomalies"] == 8 and not result["truncated"]


def test_a_range_without_labels_says_so_rather_than_inventing_figures(labelled):
    detector, _ = labelled
    result = evaluate_detector(detector, start=_at(100), end=_at(150))
    assert result["events_total"] == 1 and result["precision"] is None and result["recall"] is None
    later = evaluate_detector(detector, start=_at(150), end=_at(400))
    assert (later["precision"], later["recall"]) == (0.0, 0.0)  # one noisy event; the rule's incident missed


def test_rest_reports_the_evaluation_and_refuses_a_backwards_range(alice_client, labelled):
    detector, _ = labelled
    r = alice_client.get(f"/api/v1/detectors/{detector.pk}/evaluation/")
    assert r.status_code == 200, r.content
    body = r.json()
    assert (body["precision"], body["recall"], body["events_total"]) == (pytest.approx(1 / 3), 0.5, 4)
    assert body["events"][0]["verdict"] == "false" and body["events"][0]["labels"] == {"expected": 1}
    r = alice_client.get(f"/api/v1/detectors/{detector.pk}/evaluation/",
                         {"start": "2024-03-04T12:00:00Z", "end": "2024-03-04T11:00:00Z"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_range"


def test_another_organization_sees_no_evaluation(carol_client, carol, labelled):
    detector, _ = labelled
    assert carol_client.get(f"/api/v1/detectors/{detector.pk}/evaluation/").status_code == 404
    assert carol_client.get(f"/detectors/{detector.pk}/evaluation/").status_code == 404
    body = session_client(carol)("query($d: ID!) { detector(id: $d) { evaluation { precision } } }", d=detector.pk)
    assert body["data"]["detector"] is None


def test_graphql_evaluation_matches_rest(alice, labelled):
    detector, _ = labelled
    data = session_client(alice).data(
        'query($d: ID!) { detector(id: $d) { evaluation(start: "2024-03-04T10:00:00Z") '
        "{ precision recall eventsTotal events { start end points verdict anomalyId labels } } } }", d=detector.pk)
    evaluation = data["detector"]["evaluation"]
    assert (evaluation["precision"], evaluation["recall"], evaluation["eventsTotal"]) == (pytest.approx(1 / 3), 0.5, 4)
    assert evaluation["events"][-1]["points"] == 3 and evaluation["events"][-1]["verdict"] == "true"


def test_evaluation_page_lists_events_and_is_linked_from_the_detectors_list(alice_client, labelled):
    detector, first = labelled
    listing = alice_client.get("/detectors/").content.decode()
    assert f'href="/detectors/{detector.pk}/evaluation/"' in listing
    page = alice_client.get(f"/detectors/{detector.pk}/evaluation/").content.decode()
    assert "0.33: 1 of 3 labelled events were real" in page
    assert "0.50: found 1 of 2 incidents confirmed on LOAD" in page
    assert f'href="/anomalies/{first.pk}/"' in page and "unlabelled" in page
    narrowed = alice_client.get(f"/detectors/{detector.pk}/evaluation/",
                                {"start": "2024-03-04 11:40", "end": "2024-03-04 12:30"}).content.decode()
    assert "no labelled events in this range" in narrowed and f'href="/anomalies/{first.pk}/"' not in narrowed
    backwards = alice_client.get(f"/detectors/{detector.pk}/evaluation/", {"start": "2024-03-05", "end": "2024-03-04"})
    assert backwards.status_code == 200 and "The range ends before it starts." in backwards.content.decode()
