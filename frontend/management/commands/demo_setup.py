from django.core.management.base import BaseCommand

from accounts.services import bootstrap_org
from accounts.tenancy import actor_for_user, system_actor
from alerts.models import AlertSubscription, Channel, Target
from alerts.services.subscriptions import save_subscription
from detection.models import Rule
from detection.services.rules import RuleInput, save_rule
from watchlists import services
from watchlists.demo import DEMO_WATCHLIST, load_demo_data
from watchlists.models import Series, Watchlist

DEMO_EMAIL = "demo@anomalyhub.local"
DEMO_PASSWORD = "demo-password"
DEMO_ORG = "Demo"
LIVE_SYMBOL = "SPY.live"
# Measured on SPY's 2013-10-07 ticks: ~10 jumps and ~4 block trades in the first trading hour,
# the first within seconds of the open, so a newcomer sees anomalies within a minute at 60x.
LIVE_RULE = "abs(price - prev(price)) > 0.1; size > 100000"
# At most one demo email a minute (the replay stamps ticks with the wall clock), so the terminal
# shows alerts without being flooded by them.
DEMO_ALERT_COOLDOWN_S = 60


class Command(BaseCommand):
    help = "Create the demo user and organization for `make run` and load its real market data (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--no-data", action="store_true", help="only the user and organization")

    def handle(self, *args, no_data=False, **options):
        user, org, _ = bootstrap_org(email=DEMO_EMAIL, password=DEMO_PASSWORD, org_name=DEMO_ORG, key_name="demo")
        self.stdout.write(f"demo organization '{org.name}' ready for {user.email}")
        if no_data:
            return
        series = load_demo_data(org.pk, log=self.stdout.write)
        actor = system_actor(org.pk)
        live = Series.objects.for_actor(actor).filter(symbol=LIVE_SYMBOL).first() or services.create_series(
            actor=actor, symbol=LIVE_SYMBOL, kind="trade", exchange="XNYS",
            name="SPY ticks of 2013-10-07 replayed live at 60x")
        watchlist = Watchlist.objects.for_actor(actor).get(name=DEMO_WATCHLIST)
        services.save_watchlist(actor=actor, watchlist=watchlist, series_ids=[live.pk, *(s.pk for s in series)])
        rule = Rule.objects.for_actor(actor).filter(series=live).first() or save_rule(
            actor=actor, data=RuleInput(name="Price jumps and block trades", metrics=LIVE_RULE, series=live,
                                        severity="high"))
        # The demo user is emailed when the live rule fires: in embedded mode the email is printed in
        # the terminal of `make run` (Django's console backend), with SENDGRID_API_KEY it is sent.
        if not AlertSubscription.objects.filter(organization=org, user=user, rule=rule).exists():
            save_subscription(actor=actor_for_user(user, org.pk), subscription=AlertSubscription(
                name="Live rule by email", target=Target.RULE, rule=rule, channels=[Channel.EMAIL],
                cooldown_seconds=DEMO_ALERT_COOLDOWN_S))
