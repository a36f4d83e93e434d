"""The live feed's channel layers, with the two things the feed needs beyond the Channels API:

- `group_send_many_sync(messages)`: publish a list of (group, message) from a plain thread (the
  ingest request's on_commit, a Celery worker) without an event loop hop per message;
- `backlog(channel)`: how many events wait for one consumer in this process (its own queue), so
  a consumer that cannot keep up is judged by its own pending writes, not by server lag.

Production: `RedisPubSubLayer`, channels-redis' pub/sub layer. A group is one Redis channel; each
ASGI process subscribes once per group its sockets joined and fans out in memory, so one PUBLISH
reaches every subscriber (the list-based RedisChannelLayer pushes a copy per consumer and each
consumer polls). Delivery is at most once, like the feed's contract: a client that sees a `seq`
gap re-syncs over REST. The per-consumer bound is `capacity` (events waiting in this process).

Embedded mode: `ThreadSafeInMemoryChannelLayer`. In `make run` the demo replay and in-process
tasks publish from worker threads while consumers wait on the server's event loop. The stock
InMemoryChannelLayer would put into that loop's asyncio queues from a foreign thread, which wakes
nobody; here such sends are handed to the receiving loop with call_soon_threadsafe."""

import asyncio
import logging
import threading
import time
from copy import deepcopy
from urllib.parse import urlsplit

import redis
from asgiref.sync import async_to_sync
from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from channels_redis.utils import _consistent_hash, decode_hosts
from django.db import transaction

logger = logging.getLogger(__name__)
DEFAULT_CAPACITY = 1000
# Messages whose decoding the consumers that receive them share: the latest few (consumers take a
# message within moments of each other), and small ones (a big point batch is decoded per consumer
# rather than kept).
DECODED_KEPT, DECODED_MAX_BYTES = 64, 65536


class RedisPubSubLayer(RedisPubSubChannelLayer):
    def __init__(self, hosts=None, prefix=None, capacity=DEFAULT_CAPACITY, **kwargs):
        # Redis pub/sub ignores the database number: a channel published on db 2 reaches
        # subscribers on every db of that server. The db goes into the prefix so deployments
        # (and test runs) sharing one Redis server on different dbs never hear each other.
        prefix = prefix or f"asgi.db{_db_number(decode_hosts(hosts)[0])}."
        super().__init__(hosts=hosts, prefix=prefix, **kwargs)
        self.capacity = capacity
        self._prefix = prefix
        self._hosts = decode_hosts(hosts)
        self._sync_clients: dict[int, redis.Redis] = {}
        self._sync_lock = threading.Lock()
        self._decoded: dict[int, tuple[bytes, dict]] = {}

    def _sync_client(self, shard: int) -> redis.Redis:
        client = self._sync_clients.get(shard)
        if client is None:
            with self._sync_lock:
                client = self._sync_clients.get(shard)
                if client is None:
                    host = dict(self._hosts[shard])
                    address = host.pop("address", None)
                    client = redis.Redis.from_url(address, **host) if address else redis.Redis(**host)
                    self._sync_clients[shard] = client
        return client

    def group_channel(self, group: str) -> str:
        return f"{self._prefix}__group__{group}"  # RedisPubSubLoopLayer's group channel name

    def subscribers(self, group: str) -> int:
        """Processes subscribed to the group (PUBSUB NUMSUB: one Redis connection per process)."""
        channel = self.group_channel(group)
        return self._sync_client(_consistent_hash(channel, len(self._hosts))).pubsub_numsub(channel)[0][1]

    def group_send_many_sync(self, messages) -> None:
        """PUBLISHes every (group, message) in one pipelined round trip per shard, in order."""
        by_shard: dict[int, list] = {}
        for group, message in messages:
            channel = self.group_channel(group)
            by_shard.setdefault(_consistent_hash(channel, len(self._hosts)), []).append(
                (channel, self.serialize(message)))
        for shard, items in by_shard.items():
            pipe = self._sync_client(shard).pipeline(transaction=False)
            for channel, data in items:
                pipe.publish(channel, data)
            pipe.execute()

    def deserialize(self, message):
        """One PUBLISH reaches every consumer of the group in this process as the same bytes
        object: it is decoded once and every consumer gets the same dict (they only read it; the
        live feed also caches its JSON encoding there)."""
        key = id(message)
        hit = self._decoded.get(key)
        if hit is not None and hit[0] is message:
            return hit[1]
        decoded = super().deserialize(message)
        if len(message) > DECODED_MAX_BYTES:
            return decoded
        if len(self._decoded) >= DECODED_KEPT:
            del self._decoded[next(iter(self._decoded))]
        self._decoded[key] = (message, decoded)  # holding the bytes keeps their id from being reused
        return decoded

    def backlog(self, channel: str) -> int:
        """Events received for this consumer and not yet handled (call from its event loop)."""
        queue = self._get_layer().channels.get(channel)
        return queue.qsize() if queue is not None else 0


def group_send_many(messages) -> None:
    """Sends (group, message) pairs from a plain thread (a request's on_commit, a Celery worker),
    in order: one Redis round trip with this module's layers, else the layer's own group_send per
    message. Raises what the layer raises (Redis down)."""
    layer = get_channel_layer()
    if layer is None or not messages:
        return
    send_many = getattr(layer, "group_send_many_sync", None)
    if send_many is not None:
        send_many(messages)
    else:
        async_to_sync(_send_each)(layer, messages)


def group_send_after_commit(messages, undone: str) -> None:
    """group_send_many once the current transaction commits (at once outside one). Never raises:
    a failure (Redis down) is logged with `undone`, what it leaves to happen another way."""
    def send():
        try:
            group_send_many(messages)
        except Exception:  # noqa: BLE001 — the caller's change is committed; the log says what is left
            logger.exception("channel layer send to %s failed: %s", sorted({group for group, _ in messages}), undone)
    transaction.on_commit(send)


async def _send_each(layer, messages) -> None:
    for group, message in messages:
        await layer.group_send(group, message)


def _db_number(host: dict) -> int:
    if "db" in host:
        return int(host["db"])
    path = urlsplit(host.get("address", "")).path.strip("/")
    return int(path) if path.isdigit() else 0


class ThreadSafeInMemoryChannelLayer(InMemoryChannelLayer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._loops: dict[str, asyncio.AbstractEventLoop] = {}

    async def receive(self, channel):
        self._loops[channel] = asyncio.get_running_loop()
        return await super().receive(channel)

    async def send(self, channel, message):
        loop = self._loops.get(channel)
        try:
            current = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        if loop is None or loop is current or loop.is_closed():
            return await super().send(channel, message)
        loop.call_soon_threadsafe(self._put, channel, deepcopy(message))

    def _put(self, channel, message):
        queue = self.channels.setdefault(channel, asyncio.Queue(maxsize=self.get_capacity(channel)))
        try:
            queue.put_nowait((time.time() + self.expiry, message))
        except asyncio.QueueFull:
            pass  # like group_send: a full channel drops, the client sees a seq gap

    def group_send_many_sync(self, messages) -> None:
        async_to_sync(self._group_send_many)(messages)

    async def _group_send_many(self, messages) -> None:
        for group, message in messages:
            await self.group_send(group, message)

    def backlog(self, channel: str) -> int:
        queue = self.channels.get(channel)
        return queue.qsize() if queue is not None else 0

    async def flush(self):
        self._loops.clear()
        await super().flush()


__all__ = ["ChannelFull", "RedisPubSubLayer", "ThreadSafeInMemoryChannelLayer", "group_send_after_commit",
           "group_send_many"]
