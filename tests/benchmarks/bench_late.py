"""Late points benchmark (issue 22, case 11): concurrent writers whose batches commit out of order.

The Procfile's processes (web and a Celery worker, tests.reliability.private_services) on the bench database; 4 writers POST 2,000
ticks/s to one trade series for BENCH_LATE_SECONDS (default 30), with overlapping halves, shuffled
groups, resends and batches first sent 1.5 s late (tests/benchmarks/late_writers.py). Two rules
watch the series: `price > 200` (one anomaly per planted spike) and `max(price) > 200` over 1 s
windows (one per window holding a spike). The figure: planted anomalies stored exactly once, with
the planted count as its baseline; missed, unplanted and duplicated anomalies, and ticks stored
against ticks sent (a resend stores nothing), in its extra fields.
"""

from __future__ import annotations

import os
import time

from django.core.management import call_command
from django.db import connection

from accounts.services import bootstrap_org
from accounts.tenancy import system_actor
from detection.models import Anomaly, DetectionCursor, Rule
from detection.pipeline import RANK_BITS
from tests.reliability.private_services import AppServer, app_env
from watchlists import services
from watchlists.models import PendingWork, Series

from . import late_writers
from .bench_live import flush_bench_redis
from .harness import Row

SECONDS = float(os.environ.get("BENCH_LATE_SECONDS", "30"))
ORG_NAME = "Late points bench"
EMAIL = "late-bench@anomalyhub.local"
CATCH_UP_SECONDS = 180


def log(message: str) -> None:
    print(f"  [late] {message}", flush=True)


def setup() -> tuple[str, Series, Rule, Rule]:
    if connection.vendor != "postgresql":
        raise RuntimeError("bench_late needs PostgreSQL and Redis: run `make bench BENCH_ARGS=late`")
    call_command("migrate", verbosity=0)
    flush_bench_redis()
    old = list(Series.objects.filter(organization__name=ORG_NAME).values_list("pk", flat=True))
    if old:
        with connection.cursor() as cursor:
            for table in ("watchlists_tick", "watchlists_rollup", "watchlists_feature"):
                cursor.execute(f"DELETE FROM {table} WHERE series_id = ANY(%s)", [old])
        Series.objects.filter(pk__in=old).delete()
    _, org, key = bootstrap_org(email=EMAIL, password="late-bench-password", org_name=ORG_NAME)
    series = services.create_series(actor=system_actor(org.pk), symbol="LATE", kind="trade", exchange="")
    row = Rule.objects.create(organization=org, name="spike", series=series, metrics=late_writers.ROW_RULE)
    window = Rule.objects.create(organization=org, name="window", series=series, metrics=late_writers.WINDOW_RULE,
                                 window_size=late_writers.WINDOW_MS, step=late_writers.WINDOW_MS)
    return key, series, row, window


def _caught_up(series: Series, last_us: int) -> bool:
    cursor = DetectionCursor.objects.filter(series=series).first()
    return (cursor is not None and cursor.last_msg_id // RANK_BITS >= last_us
            and not PendingWork.objects.filter(purpose="detect", series=series).exists())


def _stored(rule: Rule) -> tuple[int, set[int]]:
    times = [round(ts.timestamp() * 1000) for ts in Anomaly.objects.filter(rule=rule).values_list("ts", flat=True)]
    return len(times), set(times)


def measure() -> dict:
    key, series, row, window = setup()
    schedule = late_writers.plan(SECONDS, (int(time.time()) - 3600) * 1000)
    log(f"{len(schedule.sends)} POSTs ({schedule.ticks:,} ticks over {SECONDS:.0f}s, {late_writers.WRITERS} writers), "
        f"{schedule.late_posts} sent {late_writers.RETRY_AFTER_S}s late, {schedule.resent_posts} resent; "
        f"{len(schedule.spikes)} spikes in {len(schedule.window_ends)} windows planted")
    server = AppServer(app_env(os.environ["DATABASE_URL"], os.environ["REDIS_URL"]), workers="ingest,detect:2")
    try:
        t0 = time.monotonic()
        sent = late_writers.send(server.base, key, series.pk, schedule)
        posted = time.monotonic()
        last_us = int(schedule.last_ms * 1000)
        deadline = posted + CATCH_UP_SECONDS
        while not _caught_up(series, last_us) and time.monotonic() < deadline:
            time.sleep(0.2)
        caught_up = time.monotonic()
    finally:
        server.stop()
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM watchlists_tick WHERE series_id = %s", [series.pk])
        ticks = cursor.fetchone()[0]
    rows, found = _stored(row)
    windows, window_found = _stored(window)
    planted, ends = schedule.spikes, schedule.window_ends
    return {
        "planted": len(planted) + len(ends), "stored_once": len(planted & found) + len(ends & window_found),
        "missed": len(planted - found) + len(ends - window_found),
        "unplanted": len(found - planted) + len(window_found - ends),
        "duplicates": (rows - len(found)) + (windows - len(window_found)),
        "spikes": {"planted": len(planted), "stored": rows, "missed": len(planted - found)},
        "windows": {"planted": len(ends), "stored": windows, "missed": len(ends - window_found)},
        "ticks_sent": schedule.ticks, "ticks_stored": ticks, "posts": sent["posts"],
        "late_posts": schedule.late_posts, "resent_posts": schedule.resent_posts,
        "resends_recognised": sent["duplicates"], "post_errors": sent["errors"],
        "load_seconds": round(posted - t0, 1), "catch_up_seconds": round(caught_up - posted, 1),
        "caught_up": caught_up < deadline,
    }


def run() -> list[Row]:
    try:
        r = measure()
    finally:
        flush_bench_redis()
    log(f"planted {r['planted']}, stored once {r['stored_once']}, missed {r['missed']}, unplanted {r['unplanted']}, "
        f"duplicates {r['duplicates']}; ticks {r['ticks_stored']:,}/{r['ticks_sent']:,} stored; resends recognised "
        f"{r['resends_recognised']}/{r['resent_posts']}; detection caught up {r['catch_up_seconds']}s after the "
        f"last POST")
    met = (r["stored_once"] == r["planted"] and not (r["missed"] or r["unplanted"] or r["duplicates"])
           and r["ticks_stored"] == r["ticks_sent"])
    return [Row("late points: planted anomalies stored exactly once", r["stored_once"], "anomalies",
                "anomalies planted (same run)", r["planted"], target="all, 0 missed, 0 duplicates",
                extra={**r, "met": met})]
