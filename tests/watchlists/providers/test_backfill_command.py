"""manage.py backfill: progress, resumable after a failure, idempotent when run again."""

import json
from datetime import date
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from watchlists.providers import services
from watchlists.providers.models import Backfill

from .conftest import bar_times
from .fakes import FakeAlphaVantage, av_csv, session_minutes

pytestmark = pytest.mark.django_db


def run(*args):
    out, err = StringIO(), StringIO()
    call_command("backfill", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_backfill_resumes_after_a_failure(fake_av, actor, ibm, org_a, monkeypatch):
    services.save_credential(actor=actor, provider="alphavantage", secret=FakeAlphaVantage.API_KEY)
    days = [date(2024, 1, 31), date(2024, 2, 1), date(2024, 3, 1)]
    fake_av.minutes["IBM"] = session_minutes(days[0]).append([session_minutes(d) for d in days[1:]])
    good_march = av_csv(session_minutes(days[2]))
    fake_av.overrides["2024-03"] = json.dumps({"Error Message": "Invalid API call."})
    args = ["--org", org_a.slug, "--symbol", "IBM", "--start", "2024-01-15", "--end", "2024-03-05",
            "--provider", "alphavantage"]
    with pytest.raises(CommandError, match="run the same command again to resume"):
        run(*args)
    backfill = Backfill.objects.get(series=ibm)
    assert backfill.status == "failed" and backfill.done_until == date(2024, 2, 29)
    assert len(bar_times(ibm.pk)) == 780 and [q["month"] for _, q in fake_av.requests] == ["2024-01", "2024-02", "2024-03"]

    fake_av.overrides["2024-03"] = good_march
    out, err = run(*args)
    assert "resuming after 2024-02-29" in err and "done, 1170 rows stored" in out
    assert [q["month"] for _, q in fake_av.requests][3:] == ["2024-03"]  # January and February not asked again
    assert len(bar_times(ibm.pk)) == 1170

    out, _ = run(*args)
    assert "already backfilled" in out and len(fake_av.requests) == 4
    out, _ = run(*args, "--restart")
    assert len(bar_times(ibm.pk)) == 1170 and len(fake_av.requests) == 7  # rerun stores nothing twice


def test_unknown_symbol_and_bad_dates(org_a):
    with pytest.raises(CommandError, match="No series"):
        run("--org", org_a.slug, "--symbol", "NOPE", "--start", "2024-01-01", "--end", "2024-01-02")
    with pytest.raises(CommandError):
        run("--org", org_a.slug, "--symbol", "NOPE", "--start", "yesterday", "--end", "2024-01-02")
