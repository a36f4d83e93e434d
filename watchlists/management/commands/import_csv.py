from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.models import Organization
from accounts.tenancy import system_actor
from anomalyhub.lib.errors import ServiceError
from watchlists import importer, services
from watchlists.models import Series


def resolve_org(ref: str) -> Organization:
    org = Organization.objects.filter(pk=int(ref)).first() if ref.isdigit() else \
        Organization.objects.filter(slug=ref).first() or Organization.objects.filter(name=ref).first()
    if org is None:
        raise CommandError(f"No organization '{ref}' (give its id, slug or name; see bootstrap_org).")
    return org


class Command(BaseCommand):
    help = ("Bulk-import a CSV (or .csv.gz) of ticks, bars or metric values into a series, with a progress "
            "bar. Resumable: re-running stores only chunks not stored before.")

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization id, slug or name")
        parser.add_argument("--symbol", required=True)
        parser.add_argument("--file", required=True, type=Path)
        parser.add_argument("--format", choices=["auto", "alphavantage", "generic"], default="auto",
                            help="alphavantage: timestamp,open,high,low,close,volume in exchange-local time")
        parser.add_argument("--exchange", default="XNYS", help="calendar for a new market series ('' for none)")
        parser.add_argument("--bar-seconds", type=int, default=None, help="bar interval of a new bar series")
        parser.add_argument("--chunk-rows", type=int, default=importer.CHUNK_ROWS)
        parser.add_argument("--history-from", type=datetime.fromisoformat, default=None,
                            help="a new series accepts points from this time on (default INGEST_EARLIEST, 1970)")

    def handle(self, *args, **opts):
        path: Path = opts["file"]
        if not path.exists():
            raise CommandError(f"{path} does not exist")
        org = resolve_org(opts["org"])
        actor = system_actor(org.pk)
        try:
            columns = importer.read_header(path)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        kind = "bar" if opts["format"] == "alphavantage" else importer.kind_for_header(columns)
        if kind is None:
            raise CommandError(f"Cannot tell ticks, bars or metrics from the header {columns}; expected "
                               "price,size or open,high,low,close,volume or value, plus a time column.")
        series = Series.objects.for_actor(actor).filter(symbol=opts["symbol"]).first()
        try:
            if series is None:
                exchange = opts["exchange"] if kind != "metric" else ""
                series = services.create_series(actor=actor, symbol=opts["symbol"], kind=kind, exchange=exchange,
                                                bar_seconds=opts["bar_seconds"] or (60 if kind == "bar" else None),
                                                history_from=opts["history_from"])
                self.stderr.write(f"created {kind} series {series.symbol} (id {series.pk})")
            with tqdm(unit=" rows", unit_scale=True, desc=series.symbol, disable=opts["verbosity"] == 0) as bar:
                report = importer.import_csv(actor=actor, series=series, path=path, progress=bar.update,
                                             chunk_rows=opts["chunk_rows"])
        except ServiceError as exc:
            lines = [f"  line {e.get('line', '?')}: {e['column']}: {e['reason']}"
                     for e in exc.details.get("errors", [])[:20]]
            raise CommandError("\n".join([exc.message, *lines])) from None
        self.stdout.write(f"{series.symbol}: {report.rows} rows read, {report.stored} stored, "
                          f"{report.skipped_chunks} of {report.chunks} chunks already imported")
