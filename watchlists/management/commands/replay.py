from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.tenancy import system_actor
from anomalyhub.lib.errors import ServiceError
from watchlists import replay
from watchlists.management.commands.import_csv import resolve_org
from watchlists.models import Series


class Command(BaseCommand):
    help = ("Replay a CSV of ticks, bars or values through the live ingest path at N x real time "
            "(--speed 60) or as fast as possible (--speed max).")

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization id, slug or name")
        parser.add_argument("--symbol", required=True, help="an existing series of the organization")
        parser.add_argument("--file", required=True, type=Path)
        parser.add_argument("--speed", default="60", help="a factor such as 60, or 'max'")
        parser.add_argument("--start", help="ISO-8601 time in the file to start from, e.g. 2013-10-07T09:30:00-04:00")
        parser.add_argument("--times", choices=replay.TIME_MODES, default="shift",
                            help="keep the file's times, shift them to start now (default), or store each point "
                                 "at the wall-clock moment it is sent (wallclock)")
        parser.add_argument("--duration", type=float, help="stop after this many seconds")

    def handle(self, *args, **opts):
        org = resolve_org(opts["org"])
        actor = system_actor(org.pk)
        series = Series.objects.for_actor(actor).filter(symbol=opts["symbol"]).first()
        if series is None:
            raise CommandError(f"No series '{opts['symbol']}' in {org.name}; create it first (or use import_csv).")
        if not opts["file"].exists():
            raise CommandError(f"{opts['file']} does not exist")
        speed = None if opts["speed"] == "max" else _positive(opts["speed"])
        start = datetime.fromisoformat(opts["start"]) if opts["start"] else None
        try:
            points = replay.load(series, opts["file"], start)
            with tqdm(total=len(points), unit=" pts", desc=f"replay {series.symbol}",
                      disable=opts["verbosity"] == 0) as bar:
                report = replay.replay(actor=actor, series=series, points=points, speed=speed,
                                       time_mode=opts["times"], duration=opts["duration"],
                                       progress=bar.update)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(f"replayed {report.points} points in {report.batches} batches, {report.seconds:.1f} s")


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandError("--speed takes a number such as 60, or 'max'") from None
    if value <= 0:
        raise CommandError("--speed must be positive")
    return value
