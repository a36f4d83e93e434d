"""The embedded mode's channel layer: in-memory, but safe to publish to from other threads.

In `make run` the demo replay and in-process tasks publish from worker threads while consumers
wait on the server's event loop. The stock InMemoryChannelLayer would put into that loop's
asyncio queues from a foreign thread, which wakes nobody; here such sends are handed to the
receiving loop with call_soon_threadsafe. (Production uses channels-redis.)"""

import asyncio
import time
from copy import deepcopy

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer


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

    async def flush(self):
        self._loops.clear()
        await super().flush()


__all__ = ["ThreadSafeInMemoryChannelLayer", "ChannelFull"]
