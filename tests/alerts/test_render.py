"""Alert emails and webhooks carry the anomaly's sentence, its source by name and exchange time."""

from datetime import UTC, datetime

import pytest

from alerts.services.render import anomaly_detail
from tests.factories import AnomalyFactory, RuleFactory, SeriesFactory

pytestmark = pytest.mark.django_db


def test_an_anomaly_in_a_payload_reads_as_the_ui_does(org_a):
    spy = SeriesFactory(organization=org_a, symbol="SPY", kind="bar", exchange="XNYS", bar_seconds=60)
    rule = RuleFactory(organization=org_a, series=spy, name="Volume spikes", window_size=900_000, step=60_000)
    anomaly = AnomalyFactory(organization=org_a, series=spy, rule=rule, source=f"rule:{rule.pk}",
                             ts=datetime(2013, 10, 7, 13, 30, tzinfo=UTC), text="volume > 10 * med(volume)",
                             observed={"volume": 251288.0, "med(volume)": 17950.0})
    detail = anomaly_detail(anomaly)
    assert detail["explanation"] == "volume 251,288 is 14× the 15-minute median 17,950"
    assert detail["source_name"] == "rule Volume spikes"
    assert (detail["local_time"], detail["zone"]) == ("2013-10-07 09:30:00", "exchange time, America/New_York")
    assert detail["ts"] == "2013-10-07T13:30:00+00:00"  # the API's UTC stays
    assert detail["url"].endswith(f"/anomalies/{anomaly.pk}/")  # a link that opens the anomaly
