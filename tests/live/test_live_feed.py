"""The live feed over the real ASGI app and the real Redis channel layer."""

import asyncio
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from accounts.services import create_api_key
from accounts.tenancy import actor_for_user, issue_ticket, system_actor
from anomalyhub.asgi import application
from detection.consumers import REASON_FOREIGN_ORIGIN, REASON_UNAUTHORIZED
from tests.factories import MembershipFactory, OrganizationFactory, SeriesFactory, UserFactory
from watchlists.services import ingest
from watchlists.store.writer import Points

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.usefixtures("clean_store")]
T0 = 1_381_154_400_000_000  # 2013-10-07T14:00:00Z in µs


@database_sync_to_async
def tenant(name="A"):
    org = OrganizationFactory(name=f"Org {name}")
    user = UserFactory()
    MembershipFactory(user=user, organization=org, role="owner")
    series = SeriesFactory(organization=org, symbol=f"S{name}", kind="metric", exchange="", bar_seconds=None)
    _, key = create_api_key(actor=actor_for_user(user, org.pk), name="k", scope="read")
    return org, user, series, key


@database_sync_to_async
def send_points(org, series, values, start=0):
    ts = [T0 + (start + i) * 1_000_000 for i in range(len(values))]
    import numpy as np

    ingest(actor=system_actor(org.pk), batches=[(series, Points("metric", np.array(ts, dtype=np.int64),
                                                                {"value": np.array(values, dtype=float)}))])


async def connect(key=None, path="/ws/v1/live/", headers=(), app=application):
    hdrs = [(b"authorization", f"Bearer {key}".encode())] if key else []
    client = WebsocketCommunicator(app, path, headers=hdrs + list(headers))
    connected, code = await client.connect(timeout=5)
    return client, connected, code


async def welcome_and_subscribe(client, **sub):
    assert (await client.receive_json_from(timeout=5))["type"] == "welcome"
    await client.send_json_to({"action": "subscribe", **sub})
    return await client.receive_json_from(timeout=5)


async def test_subscriber_gets_numbered_point_events():
    org, _, series, key = await tenant()
    client, connected, _ = await connect(key)
    assert connected
    reply = await welcome_and_subscribe(client, series=[series.pk])
    assert reply["type"] == "subscribed" and reply["series"] == [series.pk]
    await send_points(org, series, [1.0, 2.0])
    await send_points(org, series, [3.0], start=2)
    first, second = await client.receive_json_from(timeout=5), await client.receive_json_from(timeout=5)
    assert first["type"] == "metric" and first["seq"] == 1 and first["subscription"] == reply["subscription"]
    assert first["columns"] == ["ts", "value"] and first["points"] == [[T0 // 1000, 1.0], [T0 // 1000 + 1000, 2.0]]
    assert second["seq"] == 2 and second["points"][0][1] == 3.0
    await client.disconnect()


async def test_anomalies_arrive_on_the_feed():
    org, user, series, key = await tenant()

    @database_sync_to_async
    def add_rule():
        from detection.models import Rule

        Rule.objects.create(organization=org, name="hot", metrics="value > 65", series=series)

    await add_rule()
    client, _, _ = await connect(key)
    await welcome_and_subscribe(client, series=[series.pk])
    await send_points(org, series, [60.0, 70.0])
    events = [await client.receive_json_from(timeout=5) for _ in range(2)]
    anomaly = next(e for e in events if e["type"] == "anomaly")
    assert anomaly["text"] == "value > 65" and anomaly["ts"] == "2013-10-07T14:00:01Z" and anomaly["id"]
    assert sorted(e["seq"] for e in events) == [1, 2]
    await client.disconnect()


async def test_another_organization_gets_an_error_and_nothing():
    org_a, _, series_a, _ = await tenant("A")
    _, _, series_b, key_b = await tenant("B")
    client, _, _ = await connect(key_b)
    reply = await welcome_and_subscribe(client, series=[series_a.pk, series_b.pk])
    assert reply["type"] == "error" and reply["code"] == "not_found"
    assert reply["details"]["refused"] == [f"series {series_a.pk}"]

    @database_sync_to_async
    def watchlist_of_a():
        from watchlists.models import Watchlist, WatchlistItem

        wl = Watchlist.objects.create(organization=org_a, name="a")
        WatchlistItem.objects.create(organization=org_a, watchlist=wl, series=series_a)
        return wl.pk

    await client.send_json_to({"action": "subscribe", "watchlist": await watchlist_of_a()})
    assert (await client.receive_json_from(timeout=5))["code"] == "not_found"
    await send_points(org_a, series_a, [1.0])
    assert await client.receive_nothing(timeout=1)
    await client.disconnect()


async def test_auth_by_ticket_and_refusals():
    org, user, series, key = await tenant()
    ticket = await database_sync_to_async(lambda: issue_ticket(actor_for_user(user, org.pk)))()
    client, connected, _ = await connect(path=f"/ws/v1/live/?ticket={ticket}")
    assert connected and (await client.receive_json_from(timeout=5))["organization"] == org.pk
    await client.disconnect()
    for path, headers, reason in [("/ws/v1/live/?ticket=forged", [], REASON_UNAUTHORIZED),
                                  ("/ws/v1/live/", [], REASON_UNAUTHORIZED),
                                  ("/ws/v1/live/", [(b"origin", b"https://evil.example.com")], REASON_FOREIGN_ORIGIN)]:
        await assert_refused(*await connect(path=path, headers=headers), reason)
    # a foreign Origin is refused even with a valid key
    await assert_refused(*await connect(key, headers=[(b"origin", b"https://evil.example.com")]), REASON_FOREIGN_ORIGIN)


async def assert_refused(client, connected, _, reason):
    """Accepted, then closed 4401 with a reason a browser can read (a refused handshake has none)."""
    assert connected
    assert await client.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401, "reason": reason}


async def test_garbage_oversized_and_flooding_clients():
    org, _, series, key = await tenant()
    client, _, _ = await connect(key)
    await client.receive_json_from(timeout=5)
    for frame in ("not json", "[1, 2]", json.dumps({"action": "dance"}), json.dumps({"action": "subscribe"}),
                  json.dumps({"action": "subscribe", "series": ["1"]}), json.dumps({"action": "unsubscribe",
                                                                                     "subscription": 99})):
        await client.send_to(text_data=frame)
        reply = await client.receive_json_from(timeout=5)
        assert reply["type"] == "error" and reply["code"] in ("bad_request", "not_found"), frame
    await client.send_to(bytes_data=b"\x00\x01")
    assert (await client.receive_json_from(timeout=5))["code"] == "bad_request"
    await client.send_to(text_data="x" * 20_000)
    assert (await client.receive_json_from(timeout=5))["code"] == "frame_too_large"
    assert (await client.receive_output(timeout=5))["code"] == 1009
    flooder, _, _ = await connect(key)
    await flooder.receive_json_from(timeout=5)
    for _ in range(101):
        await flooder.send_json_to({"action": "ping"})
    codes = []
    while True:
        out = await flooder.receive_output(timeout=5)
        if out["type"] == "websocket.close":
            codes.append(out["code"])
            break
    assert codes == [4029]


async def test_an_idle_socket_survives_past_ten_seconds_on_redis():
    """redis-py 8 + channels-redis drop idle sockets after 5 s unless socket_timeout is None."""
    org, _, series, key = await tenant()
    client, _, _ = await connect(key)
    await welcome_and_subscribe(client, series=[series.pk])
    # The condition under test is time itself: 11 s of silence (no close, no error, no event), past
    # the 5 s after which an idle socket used to be dropped; then an event still arrives.
    assert await client.receive_nothing(timeout=11, interval=0.1)
    await send_points(org, series, [5.0])
    event = await client.receive_json_from(timeout=5)
    assert event["type"] == "metric" and event["seq"] == 1
    await client.disconnect()


async def test_unsubscribe_stops_events_and_heartbeats_flow(settings):
    settings.LIVE_HEARTBEAT_SECONDS = 0.2
    org, _, series, key = await tenant()
    client, _, _ = await connect(key)
    reply = await welcome_and_subscribe(client, series=[series.pk])
    assert (await client.receive_json_from(timeout=5))["type"] == "heartbeat"
    await client.send_json_to({"action": "unsubscribe", "subscription": reply["subscription"]})
    assert (await client.receive_json_from(timeout=5))["type"] in ("unsubscribed", "heartbeat")
    await send_points(org, series, [1.0])
    for _ in range(3):
        assert (await client.receive_json_from(timeout=5))["type"] in ("heartbeat", "unsubscribed")
    await client.disconnect()


def stops_reading_after(frames: int):
    """The application as a server runs it for a client that stops reading after `frames` frames:
    once the socket's buffers are full, the server's send() waits, for good."""
    async def app(scope, receive, send):
        written = 0

        async def server_send(message):
            nonlocal written
            if message["type"] == "websocket.send":
                written += 1
                if written > frames:
                    await asyncio.Event().wait()
            await send(message)

        return await application(scope, receive, server_send)
    return app


async def test_a_client_that_stops_reading_is_dropped_and_others_are_not(settings):
    """Slowness is judged by the frames waiting for the connection itself, not by how old an event is."""
    from watchlists.live import publish_many

    settings.LIVE_MAX_BACKLOG = 5
    org, _, busy, key = await tenant()
    quiet = await database_sync_to_async(SeriesFactory)(organization=org, symbol="Q", kind="metric", exchange="",
                                                          bar_seconds=None)
    slow, _, _ = await connect(key, app=stops_reading_after(3))  # welcome, subscribed, one event
    await welcome_and_subscribe(slow, series=[busy.pk])
    other, _, _ = await connect(key)
    await welcome_and_subscribe(other, series=[busy.pk, quiet.pk])
    await asyncio.to_thread(publish_many, [(busy.pk, {"type": "metric", "series": busy.pk, "points": [[i, 1.0]]})
                                          for i in range(20)])
    await asyncio.to_thread(publish_many, [(quiet.pk, {"type": "metric", "series": quiet.pk, "points": [[0, 2.0]]})])
    outputs = []
    while True:
        out = await slow.receive_output(timeout=5)
        outputs.append(out)
        if out["type"] == "websocket.close":
            break
    assert outputs[-1]["code"] == 4008 and outputs[-1]["reason"].startswith("too_slow")
    assert len(outputs) == 2  # the one event it read, then the close
    events = [await other.receive_json_from(timeout=5) for _ in range(21)]
    assert [e["seq"] for e in events] == list(range(1, 22)) and events[-1]["series"] == quiet.pk
    await other.disconnect()


@database_sync_to_async
def watchlist_of(org, series_list, watchlist=None):
    from watchlists.services import save_watchlist

    return save_watchlist(actor=system_actor(org.pk), watchlist=watchlist, name="followed",
                          series_ids=[s.pk for s in series_list])


async def tenant_with_watchlist():
    """A tenant with two series, the first in a watchlist."""
    org, _, first, key = await tenant()
    second = await database_sync_to_async(SeriesFactory)(organization=org, symbol="S2", kind="metric", exchange="",
                                                          bar_seconds=None)
    return org, first, second, await watchlist_of(org, [first]), key


async def test_a_watchlist_subscription_follows_the_watchlist():
    org, first, second, watchlist, key = await tenant_with_watchlist()
    client, _, _ = await connect(key)
    reply = await welcome_and_subscribe(client, watchlist=watchlist.pk)
    assert reply["series"] == [first.pk]
    await watchlist_of(org, [first, second], watchlist)
    changed = await client.receive_json_from(timeout=5)
    assert changed == {"type": "subscription_changed", "subscription": reply["subscription"],
                       "watchlist": watchlist.pk, "series": sorted([first.pk, second.pk]), "added": [second.pk],
                       "removed": []}
    await send_points(org, second, [1.0])
    assert (await client.receive_json_from(timeout=5))["series"] == second.pk
    await watchlist_of(org, [second], watchlist)
    assert (await client.receive_json_from(timeout=5))["removed"] == [first.pk]
    await send_points(org, first, [2.0])
    assert await client.receive_nothing(timeout=0.5)  # no longer followed
    await database_sync_to_async(watchlist.delete)()
    gone = await client.receive_json_from(timeout=5)
    assert gone["type"] == "subscription_changed" and gone["series"] == [] and gone["removed"] == [second.pk]
    await send_points(org, second, [3.0], start=1)
    assert await client.receive_nothing(timeout=0.5)
    await client.disconnect()


async def test_a_series_subscription_does_not_follow_a_watchlist():
    org, first, second, watchlist, key = await tenant_with_watchlist()
    client, _, _ = await connect(key)
    await welcome_and_subscribe(client, series=[first.pk])
    await watchlist_of(org, [second], watchlist)
    await send_points(org, first, [1.0])
    assert (await client.receive_json_from(timeout=5))["series"] == first.pk  # still followed, nothing else sent
    assert await client.receive_nothing(timeout=0.5)
    await client.disconnect()
