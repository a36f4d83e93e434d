"""`make run`: the web server plus a live replay of real SPY ticks, in one process.

One process, because embedded mode's channel layer is in memory: the replay's live events must
reach this server's sockets."""

import logging
import threading
from datetime import datetime

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

from accounts.models import Organization
from accounts.tenancy import system_actor
from watchlists import replay
from watchlists.demo import DATA
from watchlists.models import Series

from ... import replays
from .demo_setup import DEMO_ORG, LIVE_SYMBOL

OPEN = datetime.fromisoformat("2013-10-07T09:30:00-04:00")
QUIET_LOGGERS = ("celery.app.trace", "django.server", "django.channels.server", "daphne.server",
                 "alerts.services.dispatch")


class Command(BaseCommand):
    help = "Serve AnomalyHub and replay the demo's SPY ticks live (60x real time) into SPY.live."

    def add_arguments(self, parser):
        parser.add_argument("addrport", nargs="?", default="127.0.0.1:8000")
        parser.add_argument("--speed", type=float, default=60.0)
        parser.add_argument("--no-replay", action="store_true")
        parser.add_argument("--verbose", action="store_true",
                            help="log every request and every in-process task (quiet by default, so the "
                                 "emails printed here, e.g. the sign-up confirmation link, stand out)")

    def handle(self, *args, addrport, speed, no_replay, verbose=False, **options):
        if not verbose:
            # The demo runs several tasks a second in-process and the dev server logs each request:
            # keep warnings and errors, drop the routine lines.
            for name in QUIET_LOGGERS:
                logging.getLogger(name).setLevel(logging.WARNING)
        stop = threading.Event()
        replaying = threading.Thread(target=self._replay_forever, args=(speed, stop), daemon=True, name="demo-replay")
        if not no_replay:
            replaying.start()
        try:
            call_command("runserver", addrport, use_reloader=False)
        finally:
            stop.set()
            if replaying.is_alive():
                # Let it finish the batch in hand: a daemon thread still publishing while the
                # interpreter shuts down logs "cannot schedule new futures after interpreter shutdown".
                replaying.join(timeout=10)

    def _replay_forever(self, speed: float, stop: threading.Event) -> None:
        org = Organization.objects.filter(name=DEMO_ORG).order_by("pk").first()
        series = Series.objects.filter(organization=org, symbol=LIVE_SYMBOL).first() if org else None
        if series is None:
            self.stderr.write("demo replay: run `manage.py demo_setup` first")
            return
        points = replay.load(series, DATA / "ticks/SPY_trades_20131007.csv.gz", start=OPEN)
        self.stdout.write(f"demo replay: {len(points)} SPY ticks into {LIVE_SYMBOL} at {speed:g}x")
        try:
            while not stop.is_set():  # a trading day lasts 6.5 min at 60x; then it starts over
                sent = replays.track(series.pk, file="SPY trades of 2013-10-07 (the demo's own replay)",
                                     total=len(points), speed=speed)
                replay.replay(actor=system_actor(org.pk), series=series, points=points, speed=speed,
                              time_mode="wallclock", stop=stop.is_set, progress=sent)
        finally:
            connection.close()
