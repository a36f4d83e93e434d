"""Replay through the real ingest path, and the embedded layer it publishes through."""

import asyncio
import threading
import time

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from tests.watchlists.conftest import count_rows
from watchlists import replay

pytestmark = pytest.mark.django_db

CSV = "timestamp,value\n" + "".join(f"2024-01-02T00:00:{i:02d}Z,{i}\n" for i in range(30))


@pytest.fixture
def csv_file(tmp_path):
    path = tmp_path / "values.csv"
    path.write_text(CSV)
    return path


def test_replay_at_max_speed_stores_every_point_with_its_own_times(sensor, csv_file, org_a, capsys):
    call_command("replay", org=org_a.slug, symbol=sensor.symbol, file=csv_file, speed="max", times="keep")
    assert "replayed 30 points" in capsys.readouterr().out
    assert count_rows("watchlists_metric", sensor.pk) == 30


def test_replay_paces_points_by_speed(sensor, csv_file, org_a):
    from accounts.tenancy import system_actor

    points = replay.load(sensor, csv_file)
    began = time.monotonic()
    report = replay.replay(actor=system_actor(org_a.pk), series=sensor, points=points, speed=30.0,
                           time_mode="shift", tick_seconds=0.05)
    assert report.points == 30 and 0.8 < time.monotonic() - began < 3  # 29 s of data at 30x ~ 1 s


def test_time_modes():
    ts = np.array([0, 60_000_000, 120_000_000], dtype=np.int64)
    now = 1_700_000_000_000_000
    assert replay.replay_times(ts, "keep", 60, now).tolist() == ts.tolist()
    assert replay.replay_times(ts, "shift", 60, now).tolist() == [now, now + 60_000_000, now + 120_000_000]
    assert replay.replay_times(ts, "wallclock", 60, now).tolist() == [now, now + 1_000_000, now + 2_000_000]


def test_replay_command_errors(org_a, csv_file, sensor):
    with pytest.raises(CommandError, match="No series 'NOPE'"):
        call_command("replay", org=org_a.slug, symbol="NOPE", file=csv_file)
    with pytest.raises(CommandError, match="--speed"):
        call_command("replay", org=org_a.slug, symbol=sensor.symbol, file=csv_file, speed="fast")


def test_embedded_layer_delivers_from_another_thread_promptly():
    """The stock in-memory layer would leave the receiver asleep until something else woke its loop."""
    from anomalyhub.lib.channel_layer import ThreadSafeInMemoryChannelLayer

    layer = ThreadSafeInMemoryChannelLayer()

    async def main():
        channel = await layer.new_channel()
        await layer.group_add("g", channel)
        receiving = asyncio.ensure_future(layer.receive(channel))
        await asyncio.sleep(0.05)  # the receiver is now waiting on this loop
        sent = time.monotonic()
        threading.Thread(target=lambda: asyncio.run(layer.group_send("g", {"type": "x"}))).start()
        message = await asyncio.wait_for(receiving, timeout=2)
        return message, time.monotonic() - sent

    message, latency = asyncio.run(main())
    assert message == {"type": "x"} and latency < 0.5


