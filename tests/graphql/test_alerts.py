"""Alerts over GraphQL: subscriptions (own vs admin), webhook secrets shown once, the delivery log,
replay. Other organizations' attempts are walked by test_cross_tenant.py."""

import pytest
from django.utils import timezone

from alerts.models import AlertSubscription, Notification, WebhookEndpoint
from tests.alerts.conftest import receiver  # noqa: F401 (fixture: a local webhook receiver)
from tests.alerts.factories import endpoint_for, subscription_for
from tests.alerts.helpers import anomalies, dispatch
from tests.factories import SeriesFactory

from .conftest import codes, key_client

pytestmark = pytest.mark.django_db

SUB = "id name target minSeverity channels cooldownSeconds user { email } series { symbol } webhook { id url }"


def test_subscriptions_are_each_users_own_and_admins_see_all(alice_gql, bob_gql, org_a, alice, bob):
    series = SeriesFactory(organization=org_a, symbol="AAPL")
    created = bob_gql.data(f'mutation($s: ID!) {{ createAlertSubscription(input: {{target: "series", seriesId: $s, '
                           f'cooldownSeconds: 60}}) {{ ... on AlertSubscriptionType {{ {SUB} }} }} }}',
                           s=series.pk)["createAlertSubscription"]
    assert created["user"]["email"] == bob.email and created["series"]["symbol"] == "AAPL"
    assert created["channels"] == ["email"] and created["cooldownSeconds"] == 60
    alices = subscription_for(org_a, alice).pk
    mine = bob_gql.data("{ alertSubscriptionList { totalCount results { id } } }")["alertSubscriptionList"]
    assert mine == {"totalCount": 1, "results": [{"id": created["id"]}]}
    assert bob_gql.data("query($id: ID!) { alertSubscription(id: $id) { id } }", id=alices)["alertSubscription"] is None
    denied = bob_gql('mutation($id: ID!) { updateAlertSubscription(id: $id, input: {name: "x"}) { __typename } }',
                     id=alices)
    assert codes(denied) == ["not_found"]
    everyone = alice_gql.data("{ alertSubscriptionList(filters: {target: \"series\"}) { totalCount } }")
    assert everyone["alertSubscriptionList"]["totalCount"] == 1
    updated = alice_gql.data('mutation($id: ID!) { updateAlertSubscription(id: $id, input: {minSeverity: "high"}) '
                             '{ ... on AlertSubscriptionType { minSeverity } } }', id=created["id"])
    assert updated["updateAlertSubscription"] == {"minSeverity": "high"}
    one = alice_gql.data("query($id: ID!) { alertSubscription(id: $id) { user { email } } }", id=created["id"])
    assert one["alertSubscription"]["user"]["email"] == bob.email
    assert bob_gql.data("mutation($id: ID!) { deleteAlertSubscription(id: $id) }", id=created["id"])
    assert list(AlertSubscription.objects.values_list("pk", flat=True)) == [alices]


def test_invalid_subscriptions_are_typed_input_errors(alice_gql, org_b):
    theirs = SeriesFactory(organization=org_b)
    body = alice_gql.data('mutation($s: ID!) { createAlertSubscription(input: {target: "series", seriesId: $s, '
                          'channels: ["webhook"], cooldownSeconds: -1}) { ... on InputError { code fields '
                          '{ field } } } }', s=theirs.pk)["createAlertSubscription"]
    assert body["code"] == "invalid" and body["fields"] == [{"field": "series"}]
    bad = alice_gql.data('mutation { createAlertSubscription(input: {target: "moon", channels: ["webhook"], '
                         'cooldownSeconds: -1, quietMode: "loud"}) { ... on InputError { fields { field } } } }')
    assert {f["field"] for f in bad["createAlertSubscription"]["fields"]} >= {"target", "cooldown_seconds",
                                                                                "quiet_mode"}
    unpaired = alice_gql.data('mutation { createAlertSubscription(input: {channels: ["webhook"]}) '
                              '{ ... on InputError { fields { field } } } }')["createAlertSubscription"]
    assert unpaired["fields"] == [{"field": "webhook"}]
    assert not AlertSubscription.objects.exists()


def test_a_key_below_admin_has_no_subscriptions_of_its_own(alice, bob, org_a):
    """A key never acts as the person who made it: a read key neither sees nor creates its maker's
    subscriptions; an admin key (which may manage everyone's) creates them for its maker."""
    subscription_for(org_a, alice)
    read_key = key_client(alice, org_a, "read")
    refused = read_key('mutation { createAlertSubscription(input: {name: "k"}) { __typename } }')
    assert codes(refused) == ["permission_denied"]
    assert read_key.data("{ alertSubscriptionList { totalCount } }")["alertSubscriptionList"]["totalCount"] == 0
    admin_key = key_client(alice, org_a, "admin")
    made = admin_key.data('mutation { createAlertSubscription(input: {name: "k"}) { ... on AlertSubscriptionType '
                          '{ user { email } } } }')["createAlertSubscription"]
    assert made == {"user": {"email": alice.email}}
    assert AlertSubscription.objects.filter(user=alice).count() == 2


def test_webhook_secret_is_returned_on_create_and_rotate_only(alice_gql, bob_gql):
    new = alice_gql.data('mutation { createWebhookEndpoint(input: {url: "https://hooks.example.com/a"}) '
                         '{ ... on NewWebhookSecretType { secret webhookEndpoint { id url enabled } } } }')
    created = new["createWebhookEndpoint"]
    assert created["secret"].startswith("whsec_") and created["webhookEndpoint"]["enabled"] is True
    pk = created["webhookEndpoint"]["id"]
    listed = alice_gql.data("{ webhookEndpointList { results { id url } } }")["webhookEndpointList"]["results"]
    assert listed == [{"id": pk, "url": "https://hooks.example.com/a"}]
    assert "secret" not in str(alice_gql.data("query($id: ID!) { webhookEndpoint(id: $id) { id } }", id=pk))
    rotated = alice_gql.data("mutation($id: ID!) { rotateWebhookEndpointSecret(id: $id) { secret webhookEndpoint "
                             "{ previousSecretExpiresAt } } }", id=pk)["rotateWebhookEndpointSecret"]
    assert rotated["secret"] != created["secret"] and rotated["webhookEndpoint"]["previousSecretExpiresAt"]
    assert WebhookEndpoint.objects.get(pk=pk).previous_secret == created["secret"]
    changed = alice_gql.data('mutation($id: ID!) { updateWebhookEndpoint(id: $id, input: {description: "ops", '
                             'enabled: false}) { ... on WebhookEndpointType { description enabled } } }', id=pk)
    assert changed["updateWebhookEndpoint"] == {"description": "ops", "enabled": False}
    viewer = bob_gql('mutation { createWebhookEndpoint(input: {url: "https://hooks.example.com/b"}) '
                     '{ __typename } }')
    assert codes(viewer) == ["permission_denied"]
    assert codes(bob_gql("mutation($id: ID!) { deleteWebhookEndpoint(id: $id) }", id=pk)) == ["permission_denied"]
    assert alice_gql.data("mutation($id: ID!) { deleteWebhookEndpoint(id: $id) }", id=pk)
    assert not WebhookEndpoint.objects.exists()


def test_a_private_webhook_address_is_refused_with_a_clear_error(alice_gql, settings):
    settings.WEBHOOK_ALLOW_PRIVATE_IPS, settings.WEBHOOK_ALLOWED_HOSTS = False, []
    body = alice_gql.data('mutation { createWebhookEndpoint(input: {url: "http://10.0.0.8/hook"}) '
                          '{ ... on InputError { code message } } }')["createWebhookEndpoint"]
    assert body["code"] == "unsafe_webhook_url" and "10.0.0.8" in body["message"] or "private" in body["message"]
    assert not WebhookEndpoint.objects.exists()


def test_test_send_delivery_log_and_replay(alice_gql, org_a, alice, receiver,  # noqa: F811
                                           django_capture_on_commit_callbacks):
    endpoint = endpoint_for(org_a, url=receiver.url, created_by=alice)
    with django_capture_on_commit_callbacks(execute=True):
        sent = alice_gql.data("mutation($e: ID!) { testWebhookEndpoint(webhookEndpointId: $e) { id kind } }",
                              e=endpoint.pk)["testWebhookEndpoint"]
    assert sent["kind"] == "test" and len(receiver.requests) == 1
    log = alice_gql.data('{ deliveryList(filters: {kind: "test"}) { totalCount results { id status '
                         'webhookEndpoint { id } attemptsLog { number outcome statusCode } } } }')["deliveryList"]
    assert log["results"] == [{"id": sent["id"], "status": "sent", "webhookEndpoint": {"id": str(endpoint.pk)},
                               "attemptsLog": [{"number": 1, "outcome": "success", "statusCode": 200}]}]
    with django_capture_on_commit_callbacks(execute=True):
        again = alice_gql.data("mutation($id: ID!) { replayDelivery(id: $id) { id replayOfId } }",
                               id=sent["id"])["replayDelivery"]
    assert again["replayOfId"] == sent["id"]
    assert len(receiver.requests) == 2 and receiver.requests[0]["body"] == receiver.requests[1]["body"]
    one = alice_gql.data("query($id: ID!) { delivery(id: $id) { status } }", id=again["id"])
    assert one["delivery"] == {"status": "sent"}


def test_delivery_log_shows_each_user_only_their_own(alice_gql, bob_gql, org_a, alice, bob):
    series = SeriesFactory(organization=org_a)
    subscription_for(org_a, alice)
    subscription_for(org_a, bob)
    dispatch(org_a, anomalies(org_a, series, [timezone.now()]))
    mine = bob_gql.data("{ deliveryList { results { email subscription { user { email } } } } }")
    assert mine["deliveryList"]["results"] == [{"email": bob.email, "subscription": {"user": {"email": bob.email}}}]
    assert alice_gql.data("{ deliveryList { totalCount } }")["deliveryList"]["totalCount"] == 2
    alices = Notification.objects.get(user=alice).pk
    assert bob_gql.data("query($id: ID!) { delivery(id: $id) { id } }", id=alices)["delivery"] is None
    assert codes(bob_gql("mutation($id: ID!) { replayDelivery(id: $id) { id } }", id=alices)) == ["not_found"]


def test_replay_and_dry_run_agree(alice_gql, org_a, alice):
    series = SeriesFactory(organization=org_a)
    start = timezone.now().replace(minute=0, second=0, microsecond=0) - timezone.timedelta(days=2)
    anomalies(org_a, series, [start + timezone.timedelta(minutes=m) for m in range(0, 120, 2)])
    sub = subscription_for(org_a, alice, target="series", series=series, group_window_seconds=600)
    window = {"start": (start - timezone.timedelta(hours=1)).isoformat(), "end": timezone.now().isoformat()}
    fields = "{ ... on AlertReplayType { subscriptionId anomalies notifications } ... on InputError { code } }"
    saved = alice_gql.data(f"mutation($id: ID!, $start: DateTime!, $end: DateTime!) {{ replayAlertSubscription("
                           f"id: $id, start: $start, end: $end) {fields} }}", id=sub.pk,
                           **window)["replayAlertSubscription"]
    assert saved["subscriptionId"] == str(sub.pk) and saved["anomalies"]["count"] == 60
    assert saved["notifications"]["count"] == 12  # 60 anomalies, 2 minutes apart, in 10-minute groups
    unsaved = alice_gql.data(f"mutation($s: ID!, $start: DateTime!, $end: DateTime!) {{ dryRunAlertSubscription("
                             f"input: {{target: \"series\", seriesId: $s, groupWindowSeconds: 600}}, start: $start, "
                             f"end: $end) {fields} }}", s=series.pk, **window)["dryRunAlertSubscription"]
    assert unsaved["notifications"] == saved["notifications"] and unsaved["subscriptionId"] is None
    backwards = alice_gql.data(f"mutation($id: ID!, $start: DateTime!, $end: DateTime!) {{ replayAlertSubscription("
                               f"id: $id, start: $end, end: $start) {fields} }}", id=sub.pk, **window)
    assert backwards["replayAlertSubscription"] == {"code": "invalid"}
