"""Alpha Vantage against the fake server: month slices across DST, rate limits, errors, bad payloads."""

import json
from datetime import UTC, date, datetime

import pandas as pd
import pytest

from watchlists.providers import services
from watchlists.providers.alphavantage import AlphaVantage
from watchlists.providers.base import AuthFailed, MalformedPayload, ProviderError, RateLimited

from .conftest import bar_times
from .fakes import AV_DAILY, AV_ERROR, AV_NOTE, FakeAlphaVantage, av_csv, session_minutes, trading_days

pytestmark = pytest.mark.django_db


def us(text: str) -> int:
    return int(pd.Timestamp(text).value // 1000)


def load_month(fake, symbol, first: date, last: date):
    days = trading_days(first, last)
    fake.minutes[symbol] = session_minutes(days[0]).append([session_minutes(d) for d in days[1:]])
    return days


def av(sleeps, **kw):
    return AlphaVantage(api_key=FakeAlphaVantage.API_KEY, sleep=sleeps, **kw)


def test_a_month_crossing_the_dst_change_lands_at_the_right_utc_times(fake_av, actor, av_link, sleeps):
    # 2024-03-10: US clocks go forward. 09:30 New York is 14:30 UTC before, 13:30 UTC after.
    days = load_month(fake_av, "IBM", date(2024, 3, 1), date(2024, 3, 29))
    result = services.import_range(actor=actor, link=av_link, start=date(2024, 3, 1), end=date(2024, 3, 31),
                                   provider=av(sleeps))
    # The fake has no calendar and serves Good Friday (2024-03-29); it is no XNYS session: not stored.
    assert date(2024, 3, 29) in days and result.stored == 390 * (len(days) - 1)
    times = bar_times(av_link.series_id)
    assert us("2024-03-08T14:30:00Z") in times and us("2024-03-08T20:59:00Z") in times
    assert us("2024-03-11T13:30:00Z") in times and us("2024-03-11T19:59:00Z") in times
    assert us("2024-03-08T13:30:00Z") not in times and us("2024-03-11T14:30:00Z") - us("2024-03-11T13:30:00Z") == 3600e6
    assert times[0] == us("2024-03-01T14:30:00Z") and times[-1] == us("2024-03-28T19:59:00Z")
    (path, query), = fake_av.requests
    assert query["month"] == "2024-03" and query["datatype"] == "csv" and query["outputsize"] == "full"
    assert query["extended_hours"] == "false"
    assert query["interval"] == "1min"


def test_autumn_change_also_lands_right(fake_av, actor, av_link, sleeps):
    # 2024-11-03: clocks go back. 09:30 New York is 13:30 UTC on Friday 1st, 14:30 UTC on Monday 4th.
    load_month(fake_av, "IBM", date(2024, 11, 1), date(2024, 11, 4))
    services.import_range(actor=actor, link=av_link, start=date(2024, 11, 1), end=date(2024, 11, 4),
                          provider=av(sleeps))
    times = bar_times(av_link.series_id)
    assert times[0] == us("2024-11-01T13:30:00Z")
    assert us("2024-11-04T14:30:00Z") in times and us("2024-11-04T13:30:00Z") not in times


def test_a_rate_limit_note_is_waited_out_and_never_stored(fake_av, actor, av_link, sleeps):
    load_month(fake_av, "IBM", date(2024, 3, 4), date(2024, 3, 4))
    fake_av.scripted = [(200, {"Content-Type": "application/json"}, json.dumps({"Note": AV_NOTE}))] * 2
    result = services.import_range(actor=actor, link=av_link, start=date(2024, 3, 4), end=date(2024, 3, 4),
                                   provider=av(sleeps))
    assert sleeps == [60.0, 60.0]  # the advertised per-minute window, not a busy loop
    assert len(fake_av.requests) == 3
    assert result.stored == 390 and len(bar_times(av_link.series_id)) == 390
    av_link.refresh_from_db()
    assert av_link.last_error == ""


def test_a_daily_quota_is_reported_not_waited_for(fake_av, actor, av_link, sleeps):
    fake_av.scripted = [(200, {}, json.dumps({"Information": AV_DAILY}))]
    with pytest.raises(RateLimited):
        services.import_range(actor=actor, link=av_link, start=date(2024, 3, 4), end=date(2024, 3, 4),
                              provider=av(sleeps))
    assert sleeps == [] and bar_times(av_link.series_id) == []
    av_link.refresh_from_db()
    assert "daily limit" in av_link.last_error


def test_an_error_message_is_permanent_and_shown_on_the_link(fake_av, actor, av_link, sleeps):
    with pytest.raises(ProviderError) as exc:
        services.import_range(actor=actor, link=av_link, start=date(2024, 3, 4), end=date(2024, 3, 4),
                              provider=av(sleeps))
    assert exc.value.permanent and len(fake_av.requests) == 1
    av_link.refresh_from_db()
    assert AV_ERROR in av_link.last_error


def test_a_bad_key_is_an_auth_failure():
    with pytest.raises(AuthFailed):
        from watchlists.providers.alphavantage import parse_body

        parse_body(json.dumps({"Information": "the parameter apikey is invalid or missing."}).encode())


def test_a_malformed_csv_stores_nothing_and_the_error_is_visible(fake_av, actor, av_link, sleeps, alice_client):
    minutes = session_minutes(date(2024, 3, 4))
    lines = av_csv(minutes).split("\r\n")
    lines[200] = lines[200].split(",")[0] + ",abc,1,1,1,100"  # one bad price in the middle
    fake_av.minutes["IBM"] = minutes
    fake_av.overrides["2024-03"] = "\r\n".join(lines)
    with pytest.raises(MalformedPayload):
        services.import_range(actor=actor, link=av_link, start=date(2024, 3, 1), end=date(2024, 3, 31),
                              provider=av(sleeps))
    assert bar_times(av_link.series_id) == []
    body = alice_client.get(f"/api/v1/series-providers/?series={av_link.series_id}").json()
    (link,) = body["results"] if isinstance(body, dict) else body
    assert "malformed" in link["last_error"] and "not a number" in link["last_error"]
    assert link["last_error_at"]


@pytest.mark.parametrize("body", ["<html>Service Unavailable</html>", "date,price\n2024-03-04,1\n", "", "[1, 2]"])
def test_unexpected_bodies_are_malformed(fake_av, actor, av_link, sleeps, body):
    fake_av.minutes["IBM"] = session_minutes(date(2024, 3, 4))
    fake_av.overrides["2024-03"] = body
    with pytest.raises(MalformedPayload):
        services.import_range(actor=actor, link=av_link, start=date(2024, 3, 4), end=date(2024, 3, 4),
                              provider=av(sleeps))
    assert bar_times(av_link.series_id) == []


def test_the_daily_import_uses_the_trailing_window_and_keeps_only_that_session(fake_av, actor, av_link, sleeps):
    load_month(fake_av, "IBM", date(2024, 3, 1), date(2024, 3, 8))
    result = services.import_session(actor=actor, link=av_link, session=date(2024, 3, 7), provider=av(sleeps))
    assert result.stored == 390
    assert "month" not in fake_av.requests[0][1]
    again = services.import_session(actor=actor, link=av_link, session=date(2024, 3, 7), provider=av(sleeps))
    assert again.stored == 0 and len(fake_av.requests) == 1  # run twice: the second does nothing
    av_link.refresh_from_db()
    assert av_link.last_session == date(2024, 3, 7) and av_link.last_import_at <= datetime.now(UTC)
