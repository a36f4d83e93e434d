"""Creates the load test's tenants (idempotent): ORGS organizations, each with SERIES trade series
(one rule `price > 200` each, so detection runs on every batch), an ingest key and READ_KEYS read
keys. Writes them as JSON for the locustfile: python -m tests.load.prepare OUT.json"""

import json
import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "anomalyhub.settings")
django.setup()

from accounts.services import bootstrap_org, create_api_key  # noqa: E402
from accounts.tenancy import actor_for_user, system_actor  # noqa: E402
from detection.models import Rule  # noqa: E402
from watchlists import services  # noqa: E402
from watchlists.models import Series  # noqa: E402

ORGS = 8
SERIES = 5
READ_KEYS = 3
THRESHOLD = 200


def prepare() -> dict:
    tenants = []
    for i in range(ORGS):
        user, org, _ = bootstrap_org(email=f"load-{i}@anomalyhub.local", password="load-test-password",
                                     org_name=f"Load {i}", key_name="load bootstrap")
        actor, owner = system_actor(org.pk), actor_for_user(user, org.pk)
        series = []
        for j in range(SERIES):
            symbol = f"LOAD{i}-{j}"
            s = Series.objects.filter(organization=org, symbol=symbol).first()
            if s is None:
                s = services.create_series(actor=actor, symbol=symbol, kind="trade", exchange="")
            Rule.objects.get_or_create(organization=org, series=s, name=f"spike {symbol}",
                                       defaults={"metrics": f"price > {THRESHOLD}", "enabled": True})
            series.append({"id": s.pk, "symbol": symbol})
        tenants.append({
            "organization": org.pk,
            "series": series,
            "ingest_key": create_api_key(actor=owner, name="load ingest", scope="ingest")[1],
            "read_keys": [create_api_key(actor=owner, name=f"load read {k}", scope="read")[1] for k in range(READ_KEYS)],
        })
    return {"tenants": tenants, "threshold": THRESHOLD}


if __name__ == "__main__":
    with open(sys.argv[1], "w") as out:
        json.dump(prepare(), out)
