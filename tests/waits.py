"""Waiting for a condition with a deadline, instead of sleeping a fixed time and hoping it is enough:
the test goes on the moment the condition holds, and fails with what it waited for when it never does."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable

import redis
from asgiref.sync import sync_to_async
from django.conf import settings


def wait_until(condition: Callable[[], object], what: str, timeout: float = 10.0, interval: float = 0.02):
    """Polls `condition` until it returns something truthy (returned), or fails after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        time.sleep(interval)
    return result


async def until(condition: Callable[[], object], what: str, timeout: float = 10.0, interval: float = 0.02):
    """wait_until for async tests: `condition` may be a coroutine function, or blocking (run in a thread)."""
    check = condition if inspect.iscoroutinefunction(condition) else sync_to_async(condition)
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"waited {timeout} s for {what}"
        await asyncio.sleep(interval)
    return result


async def until_subscribed(group: str, timeout: float = 10.0) -> None:
    """Until some process of this test run listens to `group` on Redis: a socket that joined it gets its
    events. (graphql-transport-ws acknowledges no subscription, so this is the moment a test can see.)
    Asks Redis itself (PUBSUB), not the channel layer: the layer's prefix names this run's db."""
    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    client = redis.Redis.from_url(config["hosts"][0]["address"])

    def listening() -> bool:
        channels = client.pubsub_channels(f"{config['prefix']}*{group}")
        return any(count for _, count in client.pubsub_numsub(*channels)) if channels else False

    try:
        await until(listening, f"a subscription to the group {group}", timeout)
    finally:
        client.close()
