"""The schedule: NYSE sessions decide what is due; jobs are idempotent and catch up when late."""

from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
import pytest

from watchlists.providers import schedule, services, tasks
from watchlists.providers.alphavantage import AlphaVantage
from watchlists.providers.polygon import Polygon

from .conftest import bar_times
from .fakes import FakeAlphaVantage, FakePolygon, session_minutes

pytestmark = pytest.mark.django_db


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize("now, expected", [
    ("2024-07-05T21:00", date(2024, 7, 5)),   # Friday after the close (16:00 EDT = 20:00 UTC) + settle
    ("2024-07-05T20:10", date(2024, 7, 3)),   # Friday before the data settled: still Wednesday
    ("2024-07-06T12:00", date(2024, 7, 5)),   # Saturday: nothing new
    ("2024-07-07T23:00", date(2024, 7, 5)),   # Sunday: nothing new
    ("2024-07-04T22:00", date(2024, 7, 3)),   # Independence Day: no session
    ("2024-07-03T17:45", date(2024, 7, 3)),   # half day: closes 13:00 EDT = 17:00 UTC
    ("2024-01-02T21:45", date(2024, 1, 2)),   # after New Year's Day (EST: close 21:00 UTC)
    ("2024-03-11T20:45", date(2024, 3, 11)),  # first day of EDT: the close moved to 20:00 UTC
    ("2024-03-08T20:45", date(2024, 3, 7)),   # last day of EST: the close is 21:00 UTC, not yet
])
def test_last_closed_session_follows_the_nyse_calendar(now, expected):
    assert schedule.last_closed_session("XNYS", at(now)) == expected


def test_weekends_and_holidays_are_never_due():
    assert schedule.due_sessions("XNYS", at("2024-07-06T12:00"), date(2024, 7, 5)) == []
    assert schedule.due_sessions("XNYS", at("2024-07-04T22:00"), date(2024, 7, 3)) == []
    assert schedule.due_sessions("XNYS", at("2024-12-25T22:00"), date(2024, 12, 24)) == []


def test_a_late_run_catches_up_skipping_the_holiday():
    due = schedule.due_sessions("XNYS", at("2024-07-08T21:00"), date(2024, 7, 1))
    assert due == [date(2024, 7, 2), date(2024, 7, 3), date(2024, 7, 5), date(2024, 7, 8)]


def test_expected_bars_follow_dst_and_half_days():
    full = schedule.expected_bar_times("XNYS", date(2024, 3, 11), 60)
    assert len(full) == 390 and full[0] == pd.Timestamp("2024-03-11T13:30Z").value // 1000
    assert len(schedule.expected_bar_times("XNYS", date(2024, 7, 3), 60)) == 210


def test_the_daily_job_imports_each_closed_session_once(fake_av, actor, av_link, monkeypatch, sleeps):
    days = [date(2024, 7, 1), date(2024, 7, 2), date(2024, 7, 3), date(2024, 7, 5)]
    fake_av.minutes["IBM"] = session_minutes(days[0]).append(
        [session_minutes(d, close="13:00" if d == date(2024, 7, 3) else "16:00") for d in days[1:]])
    fake_av.latest_end = date(2024, 7, 5)
    monkeypatch.setattr(AlphaVantage, "__init__", _no_sleep_init(AlphaVantage.__init__, sleeps))
    av_link.last_session = date(2024, 6, 28)
    av_link.save()

    clock = {"now": at("2024-07-04T22:00")}  # a holiday, after a weekend of nothing
    monkeypatch.setattr("django.utils.timezone.now", lambda: clock["now"])
    assert tasks.daily_import.delay().get() == 3  # Mon, Tue, Wed half day; never Thursday the 4th
    assert len(fake_av.requests) == 3
    assert len(bar_times(av_link.series_id)) == 390 * 2 + 210
    assert tasks.daily_import.delay().get() == 0  # run twice: nothing due, no request made
    assert len(fake_av.requests) == 3

    clock["now"] = at("2024-07-06T15:00")  # Saturday: Friday the 5th is due, then nothing
    assert tasks.daily_import.delay().get() == 1
    av_link.refresh_from_db()
    assert av_link.last_session == date(2024, 7, 5) and av_link.last_error == ""
    assert tasks.daily_import.delay().get() == 0
    times = bar_times(av_link.series_id)
    assert len(times) == len(set(times)) == 390 * 3 + 210
    requested_days = {d.date() for d in pd.to_datetime(times, unit="us", utc=True).tz_convert("America/New_York")}
    assert date(2024, 7, 4) not in requested_days


def test_a_session_not_published_yet_stays_due(fake_av, actor, av_link, sleeps):
    fake_av.minutes["IBM"] = session_minutes(date(2024, 7, 2))
    with pytest.raises(services.ProviderError):
        services.import_session(actor=actor, link=av_link, session=date(2024, 7, 3),
                                provider=AlphaVantage(api_key=FakeAlphaVantage.API_KEY, sleep=sleeps))
    av_link.refresh_from_db()
    assert av_link.last_session is None and "No data for the session of 2024-07-03" in av_link.last_error


def _no_sleep_init(original, sleeps):
    def init(self, **kw):
        kw.setdefault("sleep", sleeps)
        original(self, **kw)
    return init


def test_gap_detection_finds_and_fills_holes_inserted_on_purpose(fake_polygon, actor, pg_link, sleeps):
    days = [date(2024, 3, 7), date(2024, 3, 8), date(2024, 3, 11)]  # across the DST change
    for d in days:
        fake_polygon.add_minutes("AAPL", session_minutes(d))
    provider = Polygon(api_key=FakePolygon.API_KEY, sleep=sleeps)
    services.import_range(actor=actor, link=pg_link, start=days[0], end=days[-1], provider=provider)
    full = bar_times(pg_link.series_id)
    assert len(full) == 390 * 3
    # Holes: a 15-minute stretch on the 8th, the first and last bar of the 11th, one lone minute.
    holes = (full[390 + 100:390 + 115] + [full[780], full[-1], full[17]])
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM watchlists_bar WHERE series_id = %s AND (extract(epoch from ts) * 1000000)::bigint"
                       " = ANY(%s)", [pg_link.series_id, holes])
    assert len(bar_times(pg_link.series_id)) == len(full) - 18

    found = services.find_gaps(link=pg_link, sessions=days)
    assert {d: sorted(v.tolist()) for d, v in found.items()} == {
        days[0]: [full[17]], days[1]: full[490:505], days[2]: sorted([full[780], full[-1]])}

    report = services.fill_gaps(actor=actor, link=pg_link, now=at("2024-03-12T12:00"), days=3, provider=provider)
    assert (report.missing, report.filled, report.sessions_checked) == (18, 18, 3)
    assert len(report.holes) == 4
    after = bar_times(pg_link.series_id)
    assert after == full  # filled, and nothing doubled
    assert services.find_gaps(link=pg_link, sessions=days) == {}
    assert services.fill_gaps(actor=actor, link=pg_link, now=at("2024-03-12T12:00"), days=3,
                              provider=provider).missing == 0  # a second run finds nothing to do


def test_the_gap_task_is_safe_to_run_twice(fake_polygon, actor, pg_link, monkeypatch):
    day = date(2024, 3, 11)
    fake_polygon.add_minutes("AAPL", session_minutes(day))
    monkeypatch.setattr("django.utils.timezone.now", lambda: at("2024-03-11T23:00"))
    assert tasks.fill_gaps.delay(pg_link.pk, pg_link.organization_id, 1).get() == {"missing": 390, "filled": 390}
    assert tasks.fill_gaps.delay(pg_link.pk, pg_link.organization_id, 1).get() == {"missing": 0, "filled": 0}
    assert tasks.fill_gaps.delay(pg_link.pk, pg_link.organization_id + 999, 1).get() == {}  # other org: nothing
    assert np.diff(bar_times(pg_link.series_id)).min() == 60_000_000
