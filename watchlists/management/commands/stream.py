from django.core.management.base import BaseCommand, CommandError

from watchlists.management.commands.import_csv import resolve_org
from watchlists.providers import services
from watchlists.providers.base import ProviderError
from watchlists.providers.models import ProviderName, SeriesProvider


class Command(BaseCommand):
    help = ("Stream live trades (T.*) and minute bars (AM.*) from Polygon into the organization's enabled "
            "provider-backed series, reconnecting with backoff and filling each gap through REST. Runs until "
            "Ctrl-C or SIGTERM, which stop it cleanly between frames. One process per organization.")

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization id, slug or name")
        parser.add_argument("--provider", default=ProviderName.POLYGON, choices=[ProviderName.POLYGON],
                            help="only Polygon streams; Alpha Vantage series use the daily import")

    def handle(self, *args, **opts):
        org = resolve_org(opts["org"])
        provider = opts["provider"]
        symbols = sorted(SeriesProvider.objects.filter(organization_id=org.pk, provider=provider, enabled=True)
                         .values_list("series__symbol", flat=True))
        if not symbols:
            raise CommandError(f"{org.name} has no enabled series on {provider}; connect one first "
                               "(POST /api/v1/series-providers/ or `backfill --provider polygon`).")
        self.stdout.write(f"Streaming {len(symbols)} series ({', '.join(symbols[:10])}"
                          f"{', ...' if len(symbols) > 10 else ''}) from {provider}; Ctrl-C to stop.")
        self.stdout.flush()
        try:
            services.serve_stream(organization_id=org.pk, provider=provider)
        except ProviderError as exc:
            raise CommandError(f"{exc.message}\nFix that (API key: POST /api/v1/provider-credentials/; per-series "
                               "errors: GET /api/v1/series/) and start the stream again.") from None
        except KeyboardInterrupt:  # Ctrl-C before the stream installed its own handler
            pass
        self.stdout.write("Stream stopped cleanly; the next start fills the gap through REST.")
