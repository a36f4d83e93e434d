"""The live feed, /ws/v1/live/ (protocol in docs/live-feed.md).

Consumers only fan out; they never write. Clients speak a small validated vocabulary
(subscribe / unsubscribe / ping); access to every series is checked through tenancy before
the socket joins its group; another organization's ids are answered with an error, never
silently ignored."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings

from accounts.socket_access import AccessBoundConsumer, socket_actor
from watchlists.live import series_group, watchlist_group
from watchlists.models import Series, Watchlist

from . import metrics

PROTOCOL = 1
MAX_FRAME_BYTES = settings.LIVE_WS_MAX_FRAME_BYTES
MAX_SERIES_PER_SUBSCRIPTION = 500
MAX_SUBSCRIPTIONS = 100
FLOOD_WINDOW, FLOOD_MESSAGES = float(settings.WS_FLOOD_SECONDS), settings.WS_FLOOD_MESSAGES
CLOSE_UNAUTHORIZED, CLOSE_TOO_SLOW, CLOSE_FLOOD, CLOSE_TOO_BIG = 4401, 4008, 4029, 1009
# Close reasons (at most 123 bytes: a close frame's limit) say what happened and what to do next.
REASON_UNAUTHORIZED = "unauthorized: send Authorization: Bearer <api key>, or ?ticket= from POST /api/v1/live/tickets/"
REASON_FOREIGN_ORIGIN = "forbidden: this Origin may not use the live feed"
REASON_ACCESS_ENDED = "access_revoked: your access ended; authenticate again to reconnect"
REASON_TOO_SLOW = "too_slow: the connection fell behind; reconnect and re-sync over REST"
REASON_FLOOD = f"rate_limited: more than {FLOOD_MESSAGES} messages in {FLOOD_WINDOW:.0f} s"
REASON_TOO_BIG = f"frame_too_large: frames are limited to {MAX_FRAME_BYTES} bytes"


def heartbeat_seconds() -> float:
    return getattr(settings, "LIVE_HEARTBEAT_SECONDS", 15.0)


@database_sync_to_async
def resolve_series(actor, series_ids, watchlist_id) -> tuple[set[int], list]:
    """(the series the actor may read, the requested ids it may not — missing or another org's)."""
    if watchlist_id is not None:
        watchlist = Watchlist.objects.for_actor(actor).filter(pk=watchlist_id).first()
        if watchlist is None:
            return set(), [f"watchlist {watchlist_id}"]
        return set(watchlist.items.values_list("series_id", flat=True)), []
    found = set(Series.objects.for_actor(actor).filter(pk__in=series_ids).values_list("pk", flat=True))
    return found, [f"series {i}" for i in series_ids if i not in found]


def _ids(value) -> list[int] | None:
    if isinstance(value, list) and 0 < len(value) <= MAX_SERIES_PER_SUBSCRIPTION and all(
            isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value):
        return list(dict.fromkeys(value))
    return None


class LiveConsumer(AccessBoundConsumer, AsyncJsonWebsocketConsumer):
    """Every frame to the client goes through this connection's own queue (`outbox`), written in
    order by one task: a client that does not read makes the server's send wait, and this
    connection alone is closed as too slow once LIVE_MAX_BACKLOG frames wait or one frame waited
    LIVE_MAX_SEND_SECONDS, while the channel layer keeps handing
    events to every other connection."""

    dropped = False  # closed as too slow
    stalled = False  # a frame waited max_send_seconds for the client's socket
    outbox: asyncio.Queue | None = None

    async def connect(self):
        ticket = parse_qs(self.scope.get("query_string", b"").decode("latin1")).get("ticket", [None])[0]
        actor, session_key, session = await socket_actor(self.scope, ticket)
        if actor.organization_id is None or not actor.can("view"):
            # Accepted, then closed: a browser cannot read a refused handshake's status, but it can
            # read a close code and its reason.
            await self.accept()
            foreign = self.scope.get("origin_status") == "foreign"
            await self.close(code=CLOSE_UNAUTHORIZED, reason=REASON_FOREIGN_ORIGIN if foreign else REASON_UNAUTHORIZED)
            return
        self.actor = actor
        self.subscriptions: dict[int, dict] = {}
        self.joined: dict[str, int] = {}  # group -> how many subscriptions need it
        self.next_id = 1
        self.received: deque[float] = deque()
        # Read once per connection, not per event.
        self.max_backlog = settings.LIVE_MAX_BACKLOG
        self.max_send_seconds = settings.LIVE_MAX_SEND_SECONDS  # for a client that does not read
        await self.accept()
        self.outbox = asyncio.Queue()
        self.writer = asyncio.create_task(self._write())
        await self.bind_access(actor, session_key, session)
        metrics.WS_CONNECTIONS.inc()
        self.counted = True
        await self.send_json({"type": "welcome", "protocol": PROTOCOL, "organization": actor.organization_id,
                              "heartbeat": heartbeat_seconds()})
        self.heartbeat = asyncio.create_task(self._beat())

    async def disconnect(self, code):
        if getattr(self, "counted", False):
            metrics.WS_CONNECTIONS.dec()
            self.counted = False
        for task in (getattr(self, "heartbeat", None), getattr(self, "writer", None)):
            if task is not None:
                task.cancel()
        await self.unbind_access()
        for group in list(getattr(self, "joined", {})):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def send(self, text_data=None, bytes_data=None, close=False):
        """Queues a frame for the writer (frames before connect() made the queue go straight out)."""
        if self.outbox is None:
            return await super().send(text_data=text_data, bytes_data=bytes_data, close=close)
        self.outbox.put_nowait(("frame", text_data, bytes_data))
        if close:
            await self.close()

    async def close(self, code=None, reason=None):
        """After the frames queued before it (an error frame, then its close)."""
        if self.outbox is None:
            return await super().close(code=code, reason=reason)
        self.outbox.put_nowait(("close", code, reason))

    async def _write(self):
        while True:
            kind, first, second = await self.outbox.get()
            if kind == "close":
                await super().close(code=first, reason=second)
                return
            try:
                # The server holds a send while the client's socket takes nothing (it stopped reading).
                await asyncio.wait_for(super().send(text_data=first, bytes_data=second), self.max_send_seconds)
            except TimeoutError:
                self.stalled = True  # the next event drops the connection (the consumer's own task can)
                return

    async def _beat(self):
        while True:
            await asyncio.sleep(heartbeat_seconds())
            await self.send_json({"type": "heartbeat", "ts": time.time()})

    # -- client -> server ---------------------------------------------------------------
    async def receive(self, text_data=None, bytes_data=None):
        now = time.monotonic()
        self.received.append(now)
        while self.received and now - self.received[0] > FLOOD_WINDOW:
            self.received.popleft()
        if len(self.received) > FLOOD_MESSAGES:
            metrics.WS_DROPPED.labels("flood").inc()
            await self._error("rate_limited", f"More than {FLOOD_MESSAGES} messages in {FLOOD_WINDOW:.0f} s.")
            await self.close(code=CLOSE_FLOOD, reason=REASON_FLOOD)
            return
        if text_data is None:
            return await self._error("bad_request", "Send JSON text frames.")
        if len(text_data) > MAX_FRAME_BYTES:
            await self._error("frame_too_large", f"Frames are limited to {MAX_FRAME_BYTES} bytes.")
            await self.close(code=CLOSE_TOO_BIG, reason=REASON_TOO_BIG)
            return
        try:
            message = json.loads(text_data)
        except (ValueError, RecursionError):  # a frame of 16,000 `[` is valid-looking but recurses too deep
            return await self._error("bad_request", "The frame is not valid JSON.")
        if not isinstance(message, dict):
            return await self._error("bad_request", 'Send an object such as {"action": "subscribe", "series": [1]}.')
        handler = {"subscribe": self._subscribe, "unsubscribe": self._unsubscribe, "ping": self._ping}.get(
            message.get("action"))
        if handler is None:
            return await self._error("bad_request", "Unknown action; use subscribe, unsubscribe or ping.")
        await handler(message)

    async def _ping(self, message):
        await self.send_json({"type": "pong", "ts": time.time(), "echo": message.get("echo")})

    async def _subscribe(self, message):
        series_ids, watchlist = _ids(message.get("series")), message.get("watchlist")
        if (series_ids is None) == (watchlist is None) or (watchlist is not None and (
                not isinstance(watchlist, int) or isinstance(watchlist, bool))):
            return await self._error("bad_request", "Subscribe to a list of series ids (at most "
                                     f"{MAX_SERIES_PER_SUBSCRIPTION}) or to one watchlist id.")
        if len(self.subscriptions) >= MAX_SUBSCRIPTIONS:
            return await self._error("too_many_subscriptions", f"At most {MAX_SUBSCRIPTIONS} subscriptions.")
        allowed, refused = await resolve_series(self.actor, series_ids or [], watchlist)
        if refused:
            return await self._error("not_found", f"Not found: {', '.join(refused)}. Nothing was subscribed.",
                                     {"refused": refused})
        sub_id, self.next_id = self.next_id, self.next_id + 1
        self.subscriptions[sub_id] = {"series": allowed, "seq": 0, "watchlist": watchlist}
        await self._join([series_group(i) for i in allowed] + ([watchlist_group(watchlist)] if watchlist else []))
        await self.send_json({"type": "subscribed", "subscription": sub_id, "series": sorted(allowed),
                              "watchlist": watchlist})

    async def _unsubscribe(self, message):
        sub = self.subscriptions.pop(message.get("subscription"), None) if isinstance(
            message.get("subscription"), int) else None
        if sub is None:
            return await self._error("not_found", "No such subscription.")
        watchlist = sub["watchlist"]
        await self._leave([series_group(i) for i in sub["series"]] + ([watchlist_group(watchlist)] if watchlist else []))
        await self.send_json({"type": "unsubscribed", "subscription": message["subscription"]})

    async def _join(self, groups):
        """Joins each group the first time a subscription needs it (one SUBSCRIBE per group)."""
        for group in groups:
            if not self.joined.get(group):
                await self.channel_layer.group_add(group, self.channel_name)
            self.joined[group] = self.joined.get(group, 0) + 1

    async def _leave(self, groups):
        for group in groups:
            self.joined[group] -= 1
            if not self.joined[group]:
                del self.joined[group]
                await self.channel_layer.group_discard(group, self.channel_name)

    async def watchlist_changed(self, message):
        """A watchlist's series changed or it was deleted (watchlists.live): its subscriptions
        follow it, re-read as this socket's actor, and the client is told what changed."""
        watchlist = message["watchlist"]
        subs = [(sub_id, sub) for sub_id, sub in self.subscriptions.items() if sub["watchlist"] == watchlist]
        if not subs:
            return
        now, _ = await resolve_series(self.actor, [], watchlist)  # a deleted watchlist has none
        for sub_id, sub in subs:
            added, removed = now - sub["series"], sub["series"] - now
            if self.subscriptions.get(sub_id) is not sub or not (added or removed):
                continue  # unsubscribed meanwhile, or unchanged
            await self._join([series_group(i) for i in added])
            await self._leave([series_group(i) for i in removed])
            sub["series"] = now
            await self.send_json({"type": "subscription_changed", "subscription": sub_id, "watchlist": watchlist,
                                  "series": sorted(now), "added": sorted(added), "removed": sorted(removed)})

    async def access_ended(self):
        """The key was revoked, the membership removed or changed, or the person signed out
        (accounts.socket_access): say so, then close as an unauthenticated socket is refused."""
        if self.dropped:
            return  # already closing
        self.dropped = True  # no more events while closing
        await self._error("access_revoked", "Your access to this organization has ended (key revoked, membership "
                          "removed or changed, or signed out). Authenticate again to reconnect.")
        await self.close(code=CLOSE_UNAUTHORIZED, reason=REASON_ACCESS_ENDED)

    async def _drop_too_slow(self):
        """Closes a connection that fell behind with 4008; what waits for it is never written (the
        close frame says why). A client whose socket takes nothing cannot take the close frame
        either: after max_send_seconds the consumer ends, and the server cuts the connection."""
        self.dropped = True
        metrics.WS_DROPPED.labels("too_slow").inc()
        self.writer.cancel()
        try:
            await asyncio.wait_for(super().close(code=CLOSE_TOO_SLOW, reason=REASON_TOO_SLOW), self.max_send_seconds)
        except TimeoutError:
            await self.websocket_disconnect({"type": "websocket.disconnect", "code": CLOSE_TOO_SLOW})

    async def _error(self, code: str, text: str, details=None):
        await self.send_json({"type": "error", "code": code, "message": text, "details": details or {}})

    # -- server -> client ---------------------------------------------------------------
    async def live_event(self, message):
        """A point batch or an anomaly for one series: once per subscription that covers it,
        numbered per subscription so clients can see a gap and re-sync over REST."""
        if self.dropped:
            return  # closing: events still arrive until the disconnect leaves the groups
        if self.stalled or self.outbox.qsize() >= self.max_backlog:
            # This connection's own frames pile up, or one waited max_send_seconds for its socket
            # (its client does not read): drop it rather than buffer for it. Judged per connection,
            # not by the event's age, so a server that is behind as a whole (the same delay for
            # every client) drops no healthy client.
            await self._drop_too_slow()
            return
        head, sent = None, 0
        for sub_id, sub in self.subscriptions.items():
            if message["series"] in sub["series"]:
                sub["seq"] += 1
                head = head or encoded_head(message)
                # The same text as send_json({**event, "subscription": .., "seq": ..}).
                await self.send(text_data=f'{head}"subscription": {sub_id}, "seq": {sub["seq"]}}}')
                sent += 1
        if sent:
            metrics.WS_MESSAGES.labels(message["event"]["type"]).inc(sent)


def encoded_head(message: dict) -> str:
    """The event's JSON without its closing brace, ready for the per-subscription fields: encoded
    once per message, not once per subscription of this connection that covers its series."""
    head = message.get("_head")
    if head is None:
        text = json.dumps(message["event"])
        head = message["_head"] = f"{text[:-1]}, " if len(text) > 2 else "{"
    return head
