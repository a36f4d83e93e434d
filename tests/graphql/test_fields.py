"""Every query and mutation field as its own organization (the walker covers other orgs'
attempts). test_every_root_field_is_exercised keeps this file complete as fields are added."""

import re
from pathlib import Path

import pytest
from django.test import Client
from django.utils import timezone

from accounts.models import ApiKey, Invitation, Membership, Role
from detection.models import Anomaly, Rule
from tests.factories import (
    AnomalyFactory,
    SeriesFactory,
    UserFactory,
    model_version_for,
)
from watchlists.models import Series, Watchlist

from .conftest import GraphQLClient, codes, key_client, session_client
from .walker import root_fields

pytestmark = pytest.mark.django_db


def test_every_root_field_is_exercised():
    text = "".join((Path(__file__).parent / name).read_text()
                   for name in ("test_fields.py", "test_whole_path.py", "test_alerts.py"))
    missing = [name for _, name, _ in root_fields() if not re.search(rf"\b{name}\b", text)]
    assert missing == [], f"add a test for {missing}"


def test_me_describes_the_caller(alice_gql, bob_gql):
    me = alice_gql.data("{ me { user { email } organization { name } role scope actions } }")["me"]
    assert me["user"]["email"] == "alice@example.com" and me["role"] == "owner" and "own" in me["actions"]
    assert bob_gql.data("{ me { role actions } }")["me"] == {"role": "viewer", "actions": ["view"]}


def test_organizations(alice, alice_gql, org_a):
    org = alice_gql.data('query($id: ID!) { organization(id: $id) { name role } organizationList { totalCount } }',
                         id=org_a.pk)
    assert org["organization"] == {"name": "Org A", "role": "owner"} and org["organizationList"]["totalCount"] == 1
    new = alice_gql.data('mutation { createOrganization(input: {name: "Second"}) { ... on OrganizationType '
                         '{ id name role } } }')["createOrganization"]
    assert new["role"] == "owner"
    upd = alice_gql.data('mutation($id: ID!) { updateOrganization(id: $id, input: {retentionDays: 30}) '
                         '{ ... on OrganizationType { retentionDays } } }', id=new["id"])
    assert upd["updateOrganization"]["retentionDays"] == 30
    switched = alice_gql.data('mutation($id: ID!) { switchOrganization(id: $id) { name } }', id=new["id"])
    assert switched["switchOrganization"]["name"] == "Second"
    assert alice_gql.data("{ me { organization { name } } }")["me"]["organization"]["name"] == "Second"
    assert alice_gql.data('mutation($id: ID!) { deleteOrganization(id: $id) }', id=new["id"])
    blank = alice_gql.data('mutation { createOrganization(input: {name: " "}) { ... on InputError { code fields '
                           '{ field } } } }')["createOrganization"]
    assert blank == {"code": "invalid", "fields": [{"field": "name"}]}


def test_members_and_invitations(alice, bob, alice_gql, bob_gql, org_a):
    bob_membership = Membership.objects.get(user=bob)
    data = alice_gql.data('query($id: ID!) { member(id: $id) { role user { email } } memberList { totalCount } }',
                          id=bob_membership.pk)
    assert data["member"] == {"role": "viewer", "user": {"email": "bob@example.com"}}
    assert data["memberList"]["totalCount"] == 2
    changed = alice_gql.data('mutation($id: ID!) { changeMemberRole(id: $id, role: "member") '
                             '{ ... on MembershipType { role } } }', id=bob_membership.pk)
    assert changed["changeMemberRole"] == {"role": "member"}
    denied = bob_gql('mutation($id: ID!) { changeMemberRole(id: $id, role: "admin") { __typename } }',
                     id=bob_membership.pk)
    assert codes(denied) == ["permission_denied"]
    invited = alice_gql.data('mutation { inviteMember(input: {email: "dave@example.com", role: "viewer"}) '
                             '{ ... on InvitationType { id email } } }')["inviteMember"]
    listed = alice_gql.data('query($id: ID!) { invitation(id: $id) { email } invitationList { totalCount } }',
                            id=invited["id"])
    assert listed["invitation"]["email"] == "dave@example.com" and listed["invitationList"]["totalCount"] == 1
    assert bob_gql.data("{ invitationList { totalCount } }")["invitationList"]["totalCount"] == 0  # manage only
    assert alice_gql.data('mutation($id: ID!) { deleteInvitation(id: $id) }', id=invited["id"])
    assert not Invitation.objects.exists()
    assert alice_gql.data('mutation($id: ID!) { removeMember(id: $id) }', id=bob_membership.pk)
    assert not Membership.objects.filter(user=bob).exists()


def test_accept_invitation(alice, org_a):
    from accounts.services import invite_member
    from accounts.tenancy import actor_for_user

    _, token = invite_member(actor=actor_for_user(alice, org_a.pk), email="erin@example.com", role=Role.VIEWER)
    erin = session_client(UserFactory(email="erin@example.com"))
    accepted = erin.data('mutation($t: String!) { acceptInvitation(token: $t) { role } }', t=token)
    assert accepted["acceptInvitation"] == {"role": "viewer"}


def test_api_keys_show_metadata_only(alice_gql):
    new = alice_gql.data('mutation { createApiKey(input: {name: "ci", scope: "ingest"}) '
                         '{ ... on NewApiKeyType { key apiKey { id prefix scope } } } }')["createApiKey"]
    assert new["key"].startswith(new["apiKey"]["prefix"])
    key_id = new["apiKey"]["id"]
    listed = alice_gql.data('query($id: ID!) { apiKey(id: $id) { name revokedAt } apiKeyList { totalCount } }',
                            id=key_id)
    assert listed["apiKey"] == {"name": "ci", "revokedAt": None}
    assert "keyHash" not in Path(__file__).parents[2].joinpath("schema.graphql").read_text()
    revoked = alice_gql.data('mutation($id: ID!) { revokeApiKey(id: $id) { revokedAt } }', id=key_id)
    assert revoked["revokeApiKey"]["revokedAt"] and ApiKey.objects.get(pk=key_id).revoked_at


def test_series_and_watchlists(alice_gql, bob_gql, org_a):
    created = alice_gql.data('mutation { createSeries(input: {symbol: "SPY", exchange: "xnys", barSeconds: 60}) '
                             '{ ... on SeriesType { id exchange timezone } } }')["createSeries"]
    assert created["exchange"] == "XNYS" and created["timezone"] == "America/New_York"
    dup = alice_gql.data('mutation { createSeries(input: {symbol: "SPY"}) { ... on InputError { code } } }')
    assert dup["createSeries"] == {"code": "conflict"}
    sid = created["id"]
    upd = alice_gql.data('mutation($id: ID!) { updateSeries(id: $id, input: {name: "S&P"}) '
                         '{ ... on SeriesType { name symbol } } }', id=sid)
    assert upd["updateSeries"] == {"name": "S&P", "symbol": "SPY"}
    wl = alice_gql.data('mutation($s: [ID!]!) { createWatchlist(input: {name: "core", seriesIds: $s}) '
                        '{ ... on WatchlistType { id } } }', s=[sid])["createWatchlist"]
    renamed = alice_gql.data('mutation($id: ID!) { updateWatchlist(id: $id, input: {name: "main", seriesIds: []}) '
                             '{ ... on WatchlistType { name series { id } } } }', id=wl["id"])
    assert renamed["updateWatchlist"] == {"name": "main", "series": []}
    read = alice_gql.data('query($s: ID!, $w: ID!) { series(id: $s) { symbol } watchlist(id: $w) { name } '
                          'seriesList(filters: {symbol: "SPY"}) { totalCount } '
                          'watchlistList { totalCount } }', s=sid, w=wl["id"])
    assert read["series"]["symbol"] == "SPY" and read["seriesList"]["totalCount"] == 1
    denied = bob_gql('mutation($id: ID!) { deleteWatchlist(id: $id) }', id=wl["id"])
    assert codes(denied) == ["permission_denied"]
    assert alice_gql.data('mutation($id: ID!) { deleteWatchlist(id: $id) }', id=wl["id"])
    assert alice_gql.data('mutation($id: ID!) { deleteSeries(id: $id) }', id=sid)
    assert not Series.objects.exists() and not Watchlist.objects.exists()


def test_points_features_and_ingest(alice, org_a, clean_store):
    series = SeriesFactory(organization=org_a, symbol="M", kind="metric", exchange="", bar_seconds=None)
    gql = key_client(alice, org_a, "ingest")
    rows = [{"ts": f"2024-01-02T10:0{i}:00Z", "value": float(i)} for i in range(5)]
    stored = gql.data('mutation($s: ID!, $p: JSON!) { ingestPoints(seriesId: $s, points: $p, idempotencyKey: "k1") '
                      '{ ... on IngestResultType { stored duplicate } } }', s=series.pk, p=rows)
    assert stored["ingestPoints"] == {"stored": 5, "duplicate": False}
    again = gql.data('mutation($s: ID!, $p: JSON!) { ingestPoints(seriesId: $s, points: $p, idempotencyKey: "k1") '
                     '{ ... on IngestResultType { duplicate } } }', s=series.pk, p=rows)
    assert again["ingestPoints"] == {"duplicate": True}
    bad = gql.data('mutation($s: ID!) { ingestPoints(seriesId: $s, points: [{ts: "nope", value: 1}]) '
                   '{ ... on InputError { code fields { field row } } } }', s=series.pk)
    assert bad["ingestPoints"]["fields"] and bad["ingestPoints"]["fields"][0]["row"] == 1
    page = gql.data('query($s: ID!) { points(seriesId: $s, limit: 2, timeFormat: "epoch_ms") '
                    '{ columns rows count truncated nextStart } }', s=series.pk)["points"]
    assert page["columns"] == ["ts", "value"] and page["count"] == 2 and page["truncated"]
    rest = gql.data('query($s: ID!, $start: DateTime) { points(seriesId: $s, start: $start) { rows } }',
                    s=series.pk, start=page["nextStart"])["points"]
    assert [r[1] for r in rest["rows"]] == [2.0, 3.0, 4.0]
    wrong = gql('query($s: ID!) { points(seriesId: $s, resolution: "2m") { count } }', s=series.pk)
    assert codes(wrong) == ["invalid"]
    features = gql.data('query($s: ID!) { features(seriesId: $s) { columns count } }', s=series.pk)["features"]
    assert "vwap_5m" in features["columns"]


def test_rules_backtests_and_stats(alice_gql, org_a):
    series = SeriesFactory(organization=org_a)
    bad = alice_gql.data('mutation($s: ID) { createRule(input: {name: "r", metrics: "close > > 1", seriesId: $s}) '
                         '{ ... on InputError { code fields { field position metricIndex } } } }', s=series.pk)
    assert bad["createRule"]["code"] == "invalid_rule"
    assert bad["createRule"]["fields"][0]["field"] == "metrics" and bad["createRule"]["fields"][0]["position"] == 8
    rule = alice_gql.data('mutation($s: ID) { createRule(input: {name: "r", metrics: "close > 1", seriesId: $s, '
                          'windowSize: 86400000000, step: 86400000000}) '
                          '{ ... on RuleType { id windowSize } } }', s=series.pk)["createRule"]
    assert rule["windowSize"] == 86_400_000_000  # beyond GraphQL's 32-bit Int: BigInt
    upd = alice_gql.data('mutation($id: ID!) { updateRule(id: $id, input: {severity: "high", windowSize: null, '
                         'step: null}) { ... on RuleType { severity stats } } }', id=rule["id"])
    assert upd["updateRule"]["severity"] == "high" and upd["updateRule"]["stats"]["status"] == "OK"
    read = alice_gql.data('query($id: ID!) { rule(id: $id) { name series { id } } ruleList { totalCount } }',
                          id=rule["id"])
    assert read["rule"]["series"] == {"id": str(series.pk)} and read["ruleList"]["totalCount"] == 1
    window = alice_gql.data('mutation($id: ID!) { backtestRule(id: $id, start: "2024-01-02T00:00:00Z", '
                            'end: "2024-01-01T00:00:00Z") { ... on InputError { code } } }', id=rule["id"])
    assert window["backtestRule"] == {"code": "invalid"}
    dry = alice_gql.data('mutation($s: ID) { dryRunRule(input: {name: "d", metrics: "close > 1", seriesId: $s}, '
                         'start: "2024-01-01T00:00:00Z", end: "2024-01-02T00:00:00Z") '
                         '{ ... on BacktestType { count ruleId } } }', s=series.pk)
    assert dry["dryRunRule"] == {"count": 0, "ruleId": None} and Rule.objects.count() == 1
    assert alice_gql.data('mutation($id: ID!) { deleteRule(id: $id) }', id=rule["id"])
    assert not Rule.objects.exists()


def test_anomalies_filters_and_feedback(alice_gql, bob_gql, org_a):
    series = SeriesFactory(organization=org_a)
    high = AnomalyFactory(organization=org_a, series=series, severity="high", source="detector:1")
    AnomalyFactory(organization=org_a, series=series, source="rule:2", ts=timezone.now() - timezone.timedelta(days=2))
    data = alice_gql.data('query($id: ID!) { anomaly(id: $id) { severity } a: anomalyList(filters: {severity: "high"})'
                          ' { totalCount } b: anomalyList(filters: {source: "rule", feedback: "none"}) { totalCount }'
                          ' }', id=high.pk)
    assert data == {"anomaly": {"severity": "high"}, "a": {"totalCount": 1}, "b": {"totalCount": 1}}
    assert codes(bob_gql('mutation($id: ID!) { labelAnomaly(id: $id, label: "confirmed") { __typename } }',
                         id=high.pk)) == ["permission_denied"]
    wrong = alice_gql.data('mutation($id: ID!) { labelAnomaly(id: $id, label: "meh") '
                           '{ ... on InputError { code } } }', id=high.pk)
    assert wrong["labelAnomaly"] == {"code": "invalid"}
    alice_gql.data('mutation($id: ID!) { labelAnomaly(id: $id, label: "false_alarm") { __typename } }', id=high.pk)
    assert Anomaly.objects.get(pk=high.pk).feedback == "false_alarm"


def test_detectors_models_and_training(alice_gql, org_a, monkeypatch):
    from detection import tasks

    monkeypatch.setattr(tasks.train_detector, "delay", lambda *a: None)  # queued only; training is tested elsewhere
    series = SeriesFactory(organization=org_a)
    created = alice_gql.data('mutation($s: ID!) { createDetector(input: {seriesId: $s, kind: "robust_zscore"}) '
                             '{ ... on DetectorType { id status } } }', s=series.pk)["createDetector"]
    assert created["status"] == "untrained"
    bad = alice_gql.data('mutation($s: ID!) { createDetector(input: {seriesId: $s, kind: "magic"}) '
                         '{ ... on InputError { code } } }', s=series.pk)
    assert bad["createDetector"] == {"code": "invalid_detector"}
    upd = alice_gql.data('mutation($id: ID!) { updateDetector(id: $id, input: {threshold: 0.7}) '
                         '{ ... on DetectorType { threshold } } }', id=created["id"])
    assert upd["updateDetector"] == {"threshold": 0.7}
    run = alice_gql.data('mutation($id: ID!) { trainDetector(detectorId: $id) { ... on TrainingRunType '
                         '{ id status } } }', id=created["id"])["trainDetector"]
    assert run["status"] == "queued"
    version = model_version_for(org_a)
    read = alice_gql.data('query($d: ID!, $r: ID!, $v: ID!) { detector(id: $d) { kind drift quality runs { id } } '
                          'detectorList { totalCount } trainingRun(id: $r) { status } trainingRunList { totalCount } '
                          'modelVersion(id: $v) { version active } modelVersionList { totalCount } }',
                          d=created["id"], r=run["id"], v=version.pk)
    assert read["detector"]["runs"] == [{"id": run["id"]}] and read["detectorList"]["totalCount"] == 2
    assert read["modelVersion"] == {"version": 1, "active": False} and read["trainingRunList"]["totalCount"] == 1
    active = alice_gql.data('mutation($id: ID!) { activateModelVersion(id: $id) { active } }', id=version.pk)
    assert active["activateModelVersion"] == {"active": True}
    assert alice_gql.data('mutation($id: ID!) { deleteDetector(id: $id) }', id=created["id"])


def test_rules_and_detectors_on_history(alice_gql, org_a, django_capture_on_commit_callbacks):
    import numpy as np

    from accounts.tenancy import system_actor
    from watchlists.services import ingest
    from watchlists.store.writer import Points

    series = SeriesFactory(organization=org_a, symbol="h", kind="metric", exchange="", bar_seconds=None)
    ts = 1_600_000_000_000_000 + np.arange(100, dtype=np.int64) * 1_000_000
    values = np.where(np.arange(100) % 10 == 3, 50.0, 1.0)
    with django_capture_on_commit_callbacks(execute=True):
        ingest(actor=system_actor(org_a.pk), batches=[(series, Points("metric", ts, {"value": values}))])
    with django_capture_on_commit_callbacks(execute=True):
        rule = alice_gql.data('mutation($s: ID) { createRule(input: {name: "h", metrics: "value > 10", seriesId: $s, '
                              'runOnHistory: true}) { ... on RuleType { id } } }', s=series.pk)["createRule"]
    listed = alice_gql.data('query($r: ID) { historyRunList(filters: {ruleId: $r}) { totalCount results '
                            '{ id status progress pointsDone anomaliesFound start end } } }', r=rule["id"])
    (run,) = listed["historyRunList"]["results"]
    assert run["status"] == "succeeded" and run["progress"] == 1.0 and run["anomaliesFound"] == 10
    assert alice_gql.data('query($id: ID!) { historyRun(id: $id) { pointsDone } }', id=run["id"]) == {
        "historyRun": {"pointsDone": 100}}
    with django_capture_on_commit_callbacks(execute=True):
        again = alice_gql.data('mutation($id: ID!) { runRuleOnHistory(id: $id) { ... on HistoryRunListType '
                               '{ runs { anomaliesFound } } } }', id=rule["id"])
    assert again["runRuleOnHistory"] == {"runs": [{"anomaliesFound": 0}]}  # no duplicates
    assert Anomaly.objects.filter(series=series).count() == 10
    detector = alice_gql.data('mutation($s: ID!) { createDetector(input: {seriesId: $s, kind: "robust_zscore"}) '
                              '{ ... on DetectorType { id } } }', s=series.pk)["createDetector"]
    untrained = alice_gql.data('mutation($id: ID!) { runDetectorOnHistory(id: $id) { ... on InputError '
                               '{ code message } } }', id=detector["id"])["runDetectorOnHistory"]
    assert untrained["code"] == "invalid_history_run" and "train" in untrained["message"]


def test_session_mutations_need_csrf_but_api_keys_do_not(alice, org_a):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    gql = GraphQLClient(strict)
    refused = gql.raw('mutation { createSeries(input: {symbol: "X"}) { __typename } }')
    assert refused.status_code == 403 and refused.json()["errors"][0]["extensions"]["code"] == "csrf_failed"
    secret = "a1" * 16  # the form a browser gets in the csrftoken cookie
    strict.cookies["csrftoken"] = secret
    ok = gql.raw('mutation { createSeries(input: {symbol: "X"}) { __typename } }', X_CSRFToken=secret)
    assert ok.status_code == 200 and ok.json()["data"]["createSeries"]["__typename"] == "SeriesType"
    keyed = key_client(alice, org_a, "admin")
    keyed.client = Client(enforce_csrf_checks=True)
    assert keyed.data('mutation { createSeries(input: {symbol: "Y"}) { __typename } }')


def test_bad_api_keys_are_refused():
    gql = GraphQLClient(Client(), {"Authorization": "Bearer ahk_nope_nope"})
    response = gql.raw("{ me { role } }")
    assert response.status_code == 401 and response.json()["errors"][0]["extensions"]["code"] == \
        "authentication_failed"


def test_read_keys_cannot_write(alice, org_a):
    gql = key_client(alice, org_a, "read")
    assert codes(gql('mutation { createSeries(input: {symbol: "Z"}) { __typename } }')) == ["permission_denied"]


def test_audit_log_is_for_admins(alice, org_a, alice_gql, bob_gql):
    from accounts.services import create_api_key
    from accounts.tenancy import actor_for_user

    create_api_key(actor=actor_for_user(alice, org_a.pk), name="ci", scope="read")
    query = '{ auditLog { totalCount results { action actorLabel details } } }'
    newest = alice_gql.data(query)["auditLog"]["results"][0]
    assert newest == {"action": "api_key.created", "actorLabel": "alice@example.com", "details": {"scope": "read"}}
    assert bob_gql.data(query)["auditLog"]["totalCount"] == 0  # viewers see none of it
