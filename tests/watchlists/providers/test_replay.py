"""File replay behind the same interface: history by range, and a paced stream."""

import asyncio
from datetime import date

import pytest
from asgiref.sync import async_to_sync

from watchlists.providers import services
from watchlists.providers.base import ProviderError
from watchlists.providers.replay import Replay

from .conftest import bar_times

pytestmark = pytest.mark.django_db
CSV = """timestamp,open,high,low,close,volume
2024-03-08T09:30:00-05:00,10,11,9,10.5,100
2024-03-08T09:31:00-05:00,10.5,11,10,10.8,120
2024-03-11T09:30:00-04:00,11,12,10,11.5,90
2024-03-11T09:31:00-04:00,11.5,12,11,11.7,80
"""


@pytest.fixture
def replay_link(actor, ibm):
    return services.connect_series(actor=actor, series=ibm, provider="replay")


def test_history_by_exchange_local_day(tmp_path, actor, replay_link):
    path = tmp_path / "ibm.csv"
    path.write_text(CSV)
    result = services.import_range(actor=actor, link=replay_link, start=date(2024, 3, 11), end=date(2024, 3, 11),
                                   provider=Replay(path=path))
    assert result.stored == 2 and len(bar_times(replay_link.series_id)) == 2


def test_stream_paces_rows_by_their_time_gaps(tmp_path, actor, replay_link):
    path = tmp_path / "ibm.csv"
    path.write_text(CSV)
    waits = []

    async def fake_sleep(seconds):
        waits.append(seconds)

    async def main():
        await services.run_stream(organization_id=actor.organization_id, provider="replay", stop=asyncio.Event(),
                                  client=Replay(path=path, speed=60), sleep=fake_sleep)

    async_to_sync(main)()
    assert len(bar_times(replay_link.series_id)) == 4
    assert waits[0] == 1.0 and len(waits) == 3  # one minute at 60x = one second


def test_a_missing_file_is_a_provider_error(tmp_path):
    with pytest.raises(ProviderError):
        Replay(path=tmp_path / "nope.csv").test_connection()
