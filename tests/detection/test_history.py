"""History runs: a rule created (or changed) after the data was stored runs over that history."""

from datetime import UTC, datetime

import numpy as np
import pytest

from accounts.tenancy import system_actor
from detection.models import Anomaly, HistoryRun
from detection.services import history
from detection.services.rules import backtest
from tests.factories import SeriesFactory
from watchlists.services import ingest
from watchlists.store.writer import Points

pytestmark = pytest.mark.django_db(transaction=True)

N = 3_000
START_US = 1_600_000_000 * 1_000_000
SPAN = {"start": datetime(2020, 1, 1, tzinfo=UTC), "end": datetime(2021, 1, 1, tzinfo=UTC)}


@pytest.fixture
def stored(org_a, settings):
    """A metric series with N points already through live detection (no rule yet)."""
    settings.HISTORY_CHUNK_POINTS = 250  # many chunks, many snapshot restores
    series = SeriesFactory(organization=org_a, symbol="s", kind="metric", exchange="", bar_seconds=None)
    rng = np.random.default_rng(3)
    values = rng.normal(10, 1, N)
    values[rng.choice(N, 25, replace=False)] += 8
    ts = START_US + np.arange(N, dtype=np.int64) * 1_000_000
    ingest(actor=system_actor(org_a.pk), batches=[(series, Points("metric", ts, {"value": values}))])
    return series


def _rule_body(series, **extra):
    return {"name": "spikes", "metrics": "value > 15; avg(value) > 10.3", "window_size": 60_000, "step": 30_000,
            "series": series.pk, **extra}


def _found(series):
    return sorted((a.ts.isoformat(), a.metric_index) for a in Anomaly.objects.filter(series=series))


def _expected(rule):
    result = backtest(actor=system_actor(rule.organization_id), rule=rule, **SPAN)
    return sorted((a["ts"], a["metric_index"]) for a in result["anomalies"])


def test_a_rule_created_after_the_import_finds_the_history_through_rest(alice_client, stored):
    r = alice_client.post("/api/v1/rules/", _rule_body(stored), format="json")
    assert r.status_code == 201 and r.json()["history_runs"] == []  # not asked: the API default
    assert Anomaly.objects.filter(series=stored).count() == 0

    r = alice_client.post("/api/v1/rules/", _rule_body(stored, name="again", run_on_history=True), format="json")
    assert r.status_code == 201, r.content
    (job,) = r.json()["history_runs"]
    assert job["status"] == "queued" and job["points_total"] == N
    from detection.models import Rule

    rule = Rule.objects.get(pk=r.json()["id"])
    got = alice_client.get(f"/api/v1/history-runs/{job['id']}/").json()
    assert got["status"] == "succeeded" and got["progress"] == 1.0 and got["points_done"] == N
    want = _expected(rule)
    assert len(want) > 5
    assert sorted((a.ts.isoformat(), a.metric_index) for a in Anomaly.objects.filter(rule=rule)) == want
    assert got["anomalies_found"] == len(want)


def test_rerunning_stores_no_duplicates_and_a_changed_rule_replaces_its_own(alice_client, stored):
    r = alice_client.post("/api/v1/rules/", _rule_body(stored, run_on_history=True), format="json")
    rule_id = r.json()["id"]
    first = _found(stored)
    r = alice_client.post(f"/api/v1/rules/{rule_id}/history/", {}, format="json")
    assert r.status_code == 202, r.content
    assert _found(stored) == first  # the same anomalies, none twice
    assert HistoryRun.objects.get(pk=r.json()[0]["id"]).anomalies_found == 0

    labelled = Anomaly.objects.filter(series=stored, metric_index=1).first()
    alice_client.post(f"/api/v1/anomalies/{labelled.pk}/feedback/", {"label": "confirmed"}, format="json")
    r = alice_client.patch(f"/api/v1/rules/{rule_id}/", {"metrics": "value > 16", "run_on_history": True},
                           format="json")
    assert r.status_code == 200, r.content
    from detection.models import Rule

    rule = Rule.objects.get(pk=rule_id)
    remaining = Anomaly.objects.filter(series=stored)
    # The old definition's unlabelled anomalies are gone; the labelled one stays; the new ones are there.
    assert {(a.ts.isoformat(), a.metric_index) for a in remaining.exclude(pk=labelled.pk)} == set(_expected(rule))
    assert remaining.filter(pk=labelled.pk, feedback="confirmed").exists()


def test_an_import_older_than_live_detection_runs_the_rules_over_it(alice_client, stored):
    """Points imported before where live detection stands are not re-streamed; the import's
    history run covers them."""
    r = alice_client.post("/api/v1/rules/", _rule_body(stored), format="json")
    from detection.models import Rule

    rule = Rule.objects.get(pk=r.json()["id"])
    earlier = START_US - N * 1_000_000
    rows = "\n".join(f"{datetime.fromtimestamp((earlier + i * 1_000_000) / 1e6, UTC).isoformat()},"
                     f"{20.0 if i % 500 == 7 else 10.0}" for i in range(N))
    r = alice_client.post(f"/api/v1/series/{stored.pk}/points/", f"ts,value\n{rows}\n", content_type="text/csv")
    assert r.status_code in (200, 201), r.content
    (run,) = HistoryRun.objects.filter(rule=rule)
    assert run.status == "succeeded" and run.start_us == earlier and run.points_done == N
    spikes = Anomaly.objects.filter(rule=rule, metric_index=0, ts__lt=datetime.fromtimestamp(START_US / 1e6, UTC))
    assert spikes.count() == N // 500


def test_history_of_a_series_live_detection_has_not_reached_is_left_to_it(org_a):
    series = SeriesFactory(organization=org_a, symbol="new", kind="metric", exchange="", bar_seconds=None)
    from detection.models import Rule

    rule = Rule.objects.create(organization=org_a, name="r", series=series, metrics="value > 1")
    assert history.request_for_rule(actor=system_actor(org_a.pk), rule=rule) == []


def test_other_organizations_runs_are_not_found(carol_client, alice_client, stored):
    r = alice_client.post("/api/v1/rules/", _rule_body(stored, run_on_history=True), format="json")
    job = r.json()["history_runs"][0]["id"]
    assert carol_client.get(f"/api/v1/history-runs/{job}/").status_code == 404
    assert carol_client.get("/api/v1/history-runs/").json()["results"] == []
    assert carol_client.post(f"/api/v1/rules/{r.json()['id']}/history/", {}, format="json").status_code == 404


def test_the_command_runs_a_rule_over_history_with_progress(stored, capsys):
    from django.core.management import call_command

    from detection.models import Rule

    rule = Rule.objects.create(organization=stored.organization, name="r", series=stored,
                               metrics="value > 15; avg(value) > 10.3", window_size=60_000, step=30_000)
    call_command("run_history", "--org", str(stored.organization_id), "--rule", str(rule.pk))
    out = capsys.readouterr()
    assert "succeeded" in out.out and "100%" in out.err  # the progress bar reached the end
    assert _found(stored) == _expected(rule)
    call_command("run_history", "--org", str(stored.organization_id), "--rule", str(rule.pk))
    assert _found(stored) == _expected(rule)  # idempotent
