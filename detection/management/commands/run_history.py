from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from accounts.tenancy import system_actor
from anomalyhub.lib.errors import ServiceError
from detection.models import Detector, HistoryRun, Rule
from detection.services import history
from watchlists.management.commands.import_csv import resolve_org


class Command(BaseCommand):
    help = ("Run a rule or a trained detector over its series' stored history, here, with a progress bar. "
            "Idempotent: re-running stores no anomaly twice. Interrupted? Run it again, or let a worker finish it "
            "(the run resumes from its last committed chunk).")

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organization id, slug or name")
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--rule", type=int, help="rule id")
        source.add_argument("--detector", type=int, help="detector id (needs a trained model)")
        parser.add_argument("--start", type=datetime.fromisoformat, default=None,
                            help="ISO time to start from (default: the series' first point)")

    def handle(self, *args, **opts):
        org = resolve_org(opts["org"])
        actor = system_actor(org.pk)
        try:
            if opts["rule"]:
                rule = Rule.objects.for_actor(actor).filter(pk=opts["rule"]).first()
                if rule is None:
                    raise CommandError(f"No rule {opts['rule']} in {org.name} (GET /api/v1/rules/ lists them).")
                runs = history.request_for_rule(actor=actor, rule=rule, start=opts["start"], background=False)
            else:
                detector = Detector.objects.for_actor(actor).filter(pk=opts["detector"]).first()
                if detector is None:
                    raise CommandError(f"No detector {opts['detector']} in {org.name}.")
                run = history.request_for_detector(actor=actor, detector=detector, start=opts["start"],
                                                   background=False)
                runs = [run] if run else []
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        if not runs:
            self.stdout.write("Nothing to run: live detection has not reached this series' stored points yet "
                              "and will cover them.")
        for run in runs:
            self._work(run, disable=opts["verbosity"] == 0)

    def _work(self, run: HistoryRun, disable: bool) -> None:
        with tqdm(total=run.points_total, unit=" points", unit_scale=True, desc=run.series.symbol,
                  disable=disable) as bar:
            while True:
                state = history.work(run.pk, run.organization_id, seconds=1)
                run.refresh_from_db()
                bar.update(run.points_done - bar.n)
                if state == "done":
                    break
        self.stdout.write(f"{run.series.symbol}: {run.status}, {run.anomalies_found} anomalies stored "
                          f"({run.points_done} points); history run {run.pk}")
        if run.status == HistoryRun.Status.FAILED:
            raise CommandError(run.message)
