"""watchlists.pending, the queue of work batches leave, on real PostgreSQL: two workers' claims on
two connections never take the same series, and a claim whose worker dies leaves its rows queued."""

import threading

import pytest
from django.db import connection, connections

from tests.factories import SeriesFactory
from watchlists import pending
from watchlists.models import PendingWork

pytestmark = pytest.mark.django_db(transaction=True)

ROLLUPS = PendingWork.objects.filter(purpose=pending.ROLLUPS)


@pytest.fixture
def three(org_a):
    series = [SeriesFactory(organization=org_a, symbol=s, kind="trade") for s in ("SPY", "QQQ", "IWM")]
    pending.add(org_a.pk, {s.pk: (10 * i, 10 * i + 5) for i, s in enumerate(series)}, purposes=(pending.ROLLUPS,))
    return series


class Holder(threading.Thread):
    """A worker on its own database connection: claims, reports what it holds, and keeps the claim
    open until told how to end it (finish, fail)."""

    def __init__(self, organization_id: int, limit: int):
        super().__init__(daemon=True)
        self.organization_id, self.limit = organization_id, limit
        self.holding, self.end = threading.Event(), threading.Event()
        self.spans, self.pid, self.error, self.fail = None, None, None, False

    def run(self):
        try:
            with pending.claim(pending.ROLLUPS, self.organization_id, self.limit) as claim:
                self.spans, self.pid = dict(claim.spans), connection.connection.info.backend_pid
                self.holding.set()
                self.end.wait(30)
                if self.fail:
                    raise RuntimeError("the work failed")
        except Exception as exc:  # noqa: BLE001 — reported to the test
            self.error = exc
        finally:
            self.holding.set()
            connections.close_all()

    def finish(self, fail: bool = False):
        self.fail = fail
        self.end.set()
        self.join(10)


def test_a_second_claim_skips_the_series_the_first_holds(org_a, three):
    spy, qqq, iwm = three
    first = Holder(org_a.pk, limit=2)
    first.start()
    assert first.holding.wait(10) and first.spans == {spy.pk: (0, 5), qqq.pk: (10, 15)}
    # A batch of a held series arrives meanwhile: its row is not the held series' first one.
    pending.add(org_a.pk, {spy.pk: (100, 200)}, purposes=(pending.ROLLUPS,))
    with pending.claim(pending.ROLLUPS, org_a.pk, limit=10) as claim:
        assert claim.spans == {iwm.pk: (20, 25)}  # not SPY or QQQ: the first claim holds them
    first.finish()
    assert first.error is None
    # What the first read is gone; the row that came while it worked is queued, as the next claim's.
    assert list(ROLLUPS.values_list("series_id", "start_us", "end_us")) == [(spy.pk, 100, 200)]
    with pending.claim(pending.ROLLUPS, org_a.pk, limit=10) as claim:
        assert claim.spans == {spy.pk: (100, 200)}
    assert not ROLLUPS.exists()


def test_a_claim_that_fails_leaves_its_rows_queued(org_a, three):
    holder = Holder(org_a.pk, limit=10)
    holder.start()
    assert holder.holding.wait(10) and len(holder.spans) == 3
    holder.finish(fail=True)
    assert isinstance(holder.error, RuntimeError) and ROLLUPS.count() == 3


def test_a_claim_whose_worker_dies_leaves_its_rows_to_the_next(org_a, three):
    holder = Holder(org_a.pk, limit=10)
    holder.start()
    assert holder.holding.wait(10) and len(holder.spans) == 3
    with pending.claim(pending.ROLLUPS, org_a.pk, limit=10) as claim:
        assert claim.spans == {}  # all held
    with connection.cursor() as cursor:  # the worker's process dies: its server session ends
        cursor.execute("SELECT pg_terminate_backend(%s)", [holder.pid])
    with pending.claim(pending.ROLLUPS, org_a.pk, limit=10) as claim:
        assert claim.spans == holder.spans
    holder.finish()
    assert holder.error is not None and not ROLLUPS.exists()


def test_claims_and_takes_keep_to_their_purpose_and_organization(org_a, org_b, three):
    spy = three[0]
    theirs = SeriesFactory(organization=org_b, symbol="SPY", kind="trade")
    pending.add(org_b.pk, {theirs.pk: (1, 2)})
    pending.add(org_a.pk, {spy.pk: (7, 8)}, purposes=(pending.DETECT,))
    assert pending.waiting(pending.DETECT, org_a.pk) == [spy.pk]
    assert pending.take(pending.DETECT, org_a.pk, [spy.pk, theirs.pk]) == {spy.pk: (7, 8)}
    with pending.claim(pending.ROLLUPS, org_b.pk, limit=10) as claim:
        assert claim.spans == {theirs.pk: (1, 2)}
    assert ROLLUPS.filter(organization=org_a).count() == 3
    assert list(PendingWork.objects.filter(purpose=pending.DETECT).values_list("series_id", flat=True)) == [theirs.pk]
