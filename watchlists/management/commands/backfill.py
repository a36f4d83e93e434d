from datetime import date

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.tenancy import system_actor
from anomalyhub.lib.errors import ServiceError
from watchlists.management.commands.import_csv import resolve_org
from watchlists.models import Series
from watchlists.providers import services
from watchlists.providers.base import ProviderError
from watchlists.providers.models import Backfill, ProviderName


def day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"'{text}' is not a date; use YYYY-MM-DD.") from None


class Command(BaseCommand):
    help = ("Backfill a series from its market-data provider, start..end (exchange-local days, inclusive), "
            "with a progress bar. Resumable: the same command run again continues where it stopped.")

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization id, slug or name")
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--start", required=True, type=day)
        parser.add_argument("--end", required=True, type=day)
        parser.add_argument("--provider", choices=[ProviderName.ALPHAVANTAGE, ProviderName.POLYGON,
                                                   ProviderName.REPLAY],
                            help="defaults to the series' provider; connects the series when it has none")
        parser.add_argument("--restart", action="store_true", help="forget the saved progress and start over")

    def handle(self, *args, **opts):
        org = resolve_org(opts["org"])
        actor = system_actor(org.pk)
        series = Series.objects.for_actor(actor).filter(symbol=opts["symbol"]).first()
        if series is None:
            raise CommandError(f"No series '{opts['symbol']}' in {org.name}; create it first (or import_csv).")
        try:
            backfill = services.get_backfill(actor=actor, series=series, start=opts["start"], end=opts["end"],
                                             provider=opts["provider"])
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        if opts["restart"]:
            Backfill.objects.filter(pk=backfill.pk).update(done_until=None, rows_stored=0, status="pending")
            backfill.refresh_from_db()
        if backfill.status == Backfill.Status.DONE:
            self.stdout.write(f"{series.symbol}: {backfill.start}..{backfill.end} was already backfilled "
                              f"({backfill.rows_stored} rows); --restart to run it again.")
            return
        if backfill.done_until:
            self.stderr.write(f"resuming after {backfill.done_until}")
        with tqdm(total=services.backfill_chunks_left(backfill), unit=" chunk", desc=series.symbol,
                  disable=opts["verbosity"] == 0) as bar:
            def progress(first, last, stored):
                bar.set_postfix_str(f"{last} +{stored}")
                bar.update(1)

            try:
                backfill = services.run_backfill(actor=actor, backfill=backfill, progress=progress)
            except ProviderError as exc:
                raise CommandError(f"{exc.message}\nStopped after {backfill.done_until or 'nothing'}; run the same "
                                   "command again to resume.") from None
        self.stdout.write(f"{series.symbol}: {backfill.start}..{backfill.end} done, {backfill.rows_stored} rows stored.")
