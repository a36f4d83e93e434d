"""The demo organization's data: real SPY ticks and IBM/BAC/AIG minute bars (see demo_data/ATTRIBUTION.md)."""

from pathlib import Path

from accounts.tenancy import system_actor

from . import importer, services
from .models import Series, Watchlist

DATA = Path(__file__).resolve().parent / "demo_data"
DEMO_SERIES = [
    # symbol, kind, bar seconds, file
    ("SPY", "trade", None, "ticks/SPY_trades_20131007.csv.gz"),
    ("IBM", "bar", 60, "minute/IBM.csv"),
    ("BAC", "bar", 60, "minute/BAC.csv"),
    ("AIG", "bar", 60, "minute/AIG.csv"),
]
DEMO_WATCHLIST = "US large caps"


def load_demo_data(organization_id: int, log=print) -> list[Series]:
    """Creates the demo series and watchlist and imports their files. Idempotent (chunk keys)."""
    actor = system_actor(organization_id)
    series = []
    for symbol, kind, bar_seconds, filename in DEMO_SERIES:
        s = Series.objects.for_actor(actor).filter(symbol=symbol).first() or services.create_series(
            actor=actor, symbol=symbol, kind=kind, exchange="XNYS", bar_seconds=bar_seconds,
            name=f"{symbol} (demo, QuantConnect Lean data)")
        report = importer.import_csv(actor=actor, series=s, path=DATA / filename)
        log(f"  {symbol}: {report.stored} new points ({report.skipped_chunks}/{report.chunks} chunks already loaded)")
        series.append(s)
    watchlist = Watchlist.objects.for_actor(actor).filter(name=DEMO_WATCHLIST).first()
    services.save_watchlist(actor=actor, watchlist=watchlist, name=DEMO_WATCHLIST,
                            series_ids=[s.pk for s in series])
    return series
