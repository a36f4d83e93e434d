"""Sending to the live feed's channel layer from plain threads, and the embedded mode's layer.

Production uses channels-redis' stock `RedisPubSubChannelLayer` (settings.CHANNEL_LAYERS): a
group is one Redis channel; each ASGI process subscribes once per group its sockets joined and
fans out in memory, so one PUBLISH reaches every subscriber. Delivery is at most once, like the
feed's contract: a client that sees a `seq` gap re-syncs over REST. How much may wait for one
socket is bounded by the consumer itself (detection.consumers), not by the layer.

`group_send_many(messages)` publishes from a plain thread (a request's on_commit, a Celery
worker) through the layer's own async `group_send`, run on one event loop per process that lives
in a daemon thread: the layer keeps its Redis connections per event loop, so a fresh loop per call
(async_to_sync from a plain thread) would connect to Redis for every send.

Embedded mode (`make run`, no Redis): `ThreadSafeInMemoryChannelLayer`. The demo replay and
in-process tasks publish from worker threads while consumers wait on the server's event loop; the
stock InMemoryChannelLayer would put into that loop's asyncio queues from a foreign loop, which
wakes nobody. Here a send is run on the loop where the channel's receiver waits."""

import asyncio
import logging
import os
import threading

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction

logger = logging.getLogger(__name__)
SEND_TIMEOUT_SECONDS = 10  # a Redis that hangs must not hold a request or a task forever


class _SenderLoop:
    """One event loop per process, in a daemon thread, that runs the sends of plain threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.pid = None

    def get(self) -> asyncio.AbstractEventLoop:
        with self.lock:
            if self.loop is None or self.pid != os.getpid():  # a forked child (Celery prefork) starts its own
                self.loop, self.pid = asyncio.new_event_loop(), os.getpid()
                threading.Thread(target=self.loop.run_forever, name="channel-layer-sender", daemon=True).start()
            return self.loop


_SENDER = _SenderLoop()


def group_send_many(messages) -> None:
    """Sends (group, message) pairs from a plain thread, in order, with the layer's group_send.
    Raises what the layer raises (Redis down), or TimeoutError."""
    layer = get_channel_layer()
    if layer is None or not messages:
        return
    future = asyncio.run_coroutine_threadsafe(_send_each(layer, messages), _SENDER.get())
    future.result(timeout=SEND_TIMEOUT_SECONDS)


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


class ThreadSafeInMemoryChannelLayer(InMemoryChannelLayer):
    """InMemoryChannelLayer whose send() from another event loop runs on the receiver's loop."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.receiver_loops: dict[str, asyncio.AbstractEventLoop] = {}

    async def receive(self, channel):
        self.receiver_loops[channel] = asyncio.get_running_loop()
        return await super().receive(channel)

    async def send(self, channel, message):
        loop = self.receiver_loops.get(channel)
        if loop is None or loop is asyncio.get_running_loop() or loop.is_closed():
            return await super().send(channel, message)
        # Not awaited: a full channel drops the message (ChannelFull, which group_send ignores too).
        asyncio.run_coroutine_threadsafe(super().send(channel, message), loop)

    async def flush(self):
        self.receiver_loops.clear()
        await super().flush()


__all__ = ["ThreadSafeInMemoryChannelLayer", "group_send_after_commit", "group_send_many"]
