"""Learned detectors in AnomalyHub: training into the registry, streaming scores, drift, labels."""

import pytest

from detection.models import Anomaly, Detector, ModelVersion, TrainingRun
from detection.services import detectors as detector_services
from tests.factories import SeriesFactory
from watchlists import importer
from watchlists.demo import DATA

pytestmark = pytest.mark.django_db


@pytest.fixture
def ibm(org_a):
    """IBM's real 1-minute bars (2013-10-04 .. 10-11), loaded like an import."""
    from accounts.tenancy import system_actor

    series = SeriesFactory(organization=org_a, symbol="IBM", kind="bar", exchange="XNYS", bar_seconds=60)
    importer.import_csv(actor=system_actor(org_a.pk), series=series, path=DATA / "minute/IBM.csv")
    series.refresh_from_db()
    return series


@pytest.fixture
def trained(alice_client, ibm, django_capture_on_commit_callbacks):
    r = alice_client.post("/api/v1/detectors/", {"series": ibm.pk, "kind": "robust_zscore"}, format="json")
    assert r.status_code == 201, r.content
    detector = r.json()
    with django_capture_on_commit_callbacks(execute=True):
        r = alice_client.post(f"/api/v1/detectors/{detector['id']}/train/", {}, format="json")
    assert r.status_code == 202, r.content
    return detector


def test_training_stores_a_versioned_model_in_the_database(alice_client, trained):
    detector = alice_client.get(f"/api/v1/detectors/{trained['id']}/").json()
    assert detector["status"] == "ready" and detector["active_version"] == 1
    assert detector["latest_run"]["status"] == "succeeded" and detector["latest_run"]["progress"] == 1.0
    version = ModelVersion.objects.get(detector_id=trained["id"])
    assert len(bytes(version.artifact)) > 100 and version.validation["points"] > 0 and "loss" in version.validation
    models = alice_client.get("/api/v1/models/", {"detector": trained["id"]}).json()["results"]
    assert [m["version"] for m in models] == [1] and "artifact" not in models[0]


def test_training_is_idempotent(trained):
    run = TrainingRun.objects.get(detector_id=trained["id"])
    assert detector_services.run_training(run.pk, run.organization_id) is None  # already claimed
    assert ModelVersion.objects.filter(detector_id=trained["id"]).count() == 1


def test_new_points_are_scored_and_a_spike_is_an_anomaly(alice_client, trained, ibm, django_capture_on_commit_callbacks):
    bars = [{"ts": f"2013-10-14T14:{m:02d}:00Z", "open": 186, "high": 186.2, "low": 185.9, "close": 186.1,
             "volume": 5000} for m in range(30, 50)]
    bars[15].update(high=199, close=198.5)  # a 7 % jump in one minute
    with django_capture_on_commit_callbacks(execute=True):
        r = alice_client.post(f"/api/v1/series/{ibm.pk}/points/", bars, format="json")
    assert r.status_code == 201
    found = Anomaly.objects.filter(detector_id=trained["id"])
    assert "2013-10-14T14:45:00+00:00" in {a.ts.isoformat() for a in found}
    spike = found.get(ts="2013-10-14T14:45:00Z")
    assert spike.score >= 0.5 and spike.model_version == "v1" and spike.expected["upper"] < 198.5
    stream = alice_client.get(f"/api/v1/detectors/{trained['id']}/stream/").json()
    assert stream["state"] == "ready" and stream["model_version"] == 1


def test_a_poisoned_artifact_is_refused_and_marks_the_detector_failed(trained, ibm):
    import pickle

    ModelVersion.objects.filter(detector_id=trained["id"]).update(artifact=pickle.dumps({"evil": 1}))
    detector_services._loaded.cache_clear()
    detector = Detector.objects.get(pk=trained["id"])
    from detection.detectors import ArtifactError

    with pytest.raises(ArtifactError):
        detector_services.active_model(detector)
    from detection.pipeline.engines import run_detector

    assert run_detector(detector, ibm, __import__("numpy").array([1381154400000000]), {"close": [1.0]}) == []
    assert Detector.objects.get(pk=trained["id"]).status == "failed"


def test_not_enough_history_fails_with_a_clear_message(alice_client, org_a, django_capture_on_commit_callbacks):
    empty = SeriesFactory(organization=org_a, symbol="NEW", kind="metric", exchange="", bar_seconds=None)
    detector = alice_client.post("/api/v1/detectors/", {"series": empty.pk, "kind": "robust_zscore"},
                                 format="json").json()
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(f"/api/v1/detectors/{detector['id']}/train/", {}, format="json")
    run = alice_client.get(f"/api/v1/detectors/{detector['id']}/").json()["latest_run"]
    assert run["status"] == "failed" and "Not enough history" in run["message"]


def test_tick_series_and_bad_params_are_refused(alice_client, org_a):
    ticks = SeriesFactory(organization=org_a, symbol="T", kind="trade", bar_seconds=None)
    r = alice_client.post("/api/v1/detectors/", {"series": ticks.pk, "kind": "ensemble"}, format="json")
    assert r.status_code == 400 and "series" in r.json()["error"]["details"]
    bars = SeriesFactory(organization=org_a, symbol="B", kind="bar")
    r = alice_client.post("/api/v1/detectors/", {"series": bars.pk, "kind": "robust_zscore",
                                                 "params": {"no_such": 1}}, format="json")
    assert r.status_code == 400 and "params" in r.json()["error"]["details"]


def test_a_model_right_after_training_has_not_drifted(alice_client, trained):
    """Price levels of a week against its last day always differ (PSI 7 for a model trained a
    second ago); drift compares their relative changes."""
    drift = alice_client.get(f"/api/v1/detectors/{trained['id']}/drift/").json()
    assert drift["features"]["value"] < 0.25, drift["features"]
    assert not {"value", "vwap_5m", "vwap_15m"} & set(drift["drifted"]), drift
    assert not drift["needs_retraining"]


def test_drift_and_quality_from_labels(alice_client, trained, ibm):
    drift = alice_client.get(f"/api/v1/detectors/{trained['id']}/drift/").json()
    assert drift["model_version"] == 1 and "value" in drift["features"]
    for i, label in enumerate(["false_alarm", "confirmed", "confirmed"]):
        Anomaly.objects.create(organization=ibm.organization, series=ibm, detector_id=trained["id"],
                               source=f"detector:{trained['id']}", ts=f"2013-10-10T14:0{i}:00Z", text="x",
                               score=0.6 + 0.1 * i, feedback=label)
    quality = alice_client.get(f"/api/v1/detectors/{trained['id']}/quality/").json()
    assert quality["precision"]["labelled"] == 3 and abs(quality["precision"]["precision"] - 2 / 3) < 1e-9
    assert quality["suggested_threshold"]["threshold"] == pytest.approx(0.7)


def test_reactivating_an_older_version(alice_client, trained, django_capture_on_commit_callbacks):
    Detector.objects.filter(pk=trained["id"]).update(needs_retraining=True)  # forces activation of v2
    with django_capture_on_commit_callbacks(execute=True):
        alice_client.post(f"/api/v1/detectors/{trained['id']}/train/", {}, format="json")
    v1 = ModelVersion.objects.get(detector_id=trained["id"], version=1)
    assert not v1.active and ModelVersion.objects.get(detector_id=trained["id"], version=2).active
    r = alice_client.post(f"/api/v1/models/{v1.pk}/activate/")
    assert r.status_code == 200 and r.json()["active"] is True
    assert ModelVersion.objects.filter(detector_id=trained["id"], active=True).count() == 1


def test_a_trained_detector_runs_over_the_stored_history(alice_client, ibm, django_capture_on_commit_callbacks):
    from detection import pipeline
    from detection.models import DetectionCursor

    pipeline.run_series(ibm.pk, ibm.organization_id)  # live detection has passed the imported points
    r = alice_client.post("/api/v1/detectors/", {"series": ibm.pk, "kind": "robust_zscore", "threshold": 0.1},
                          format="json")
    detector = r.json()["id"]
    assert alice_client.post(f"/api/v1/detectors/{detector}/history/", {}, format="json").status_code == 400
    with django_capture_on_commit_callbacks(execute=True):
        r = alice_client.post(f"/api/v1/detectors/{detector}/train/", {"run_on_history": True}, format="json")
    assert r.status_code == 202, r.content
    job = r.json()["history_run"]
    assert job["status"] == "queued" and job["detector"] == detector
    done = alice_client.get(f"/api/v1/history-runs/{job['id']}/").json()
    assert done["status"] == "succeeded" and done["points_done"] == done["points_total"] > 2000, done
    found = Anomaly.objects.filter(series=ibm, source=f"detector:{detector}")
    history = sorted(found.values_list("ts", "score"))
    assert done["anomalies_found"] == len(history) > 0
    with django_capture_on_commit_callbacks(execute=True):
        r = alice_client.post(f"/api/v1/detectors/{detector}/history/", {}, format="json")
    assert r.status_code == 202 and alice_client.get(f"/api/v1/history-runs/{r.json()[0]['id']}/").json()[
        "anomalies_found"] == 0  # the same model over the same points: nothing new, nothing twice
    # What the live pipeline finds streaming the same points with the same model: the same anomalies.
    found.delete()
    DetectionCursor.objects.filter(series=ibm).update(last_msg_id=-1)
    pipeline.run_series(ibm.pk, ibm.organization_id)
    assert sorted(found.values_list("ts", "score")) == history
