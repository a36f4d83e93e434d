"""The last-owner rule under concurrency (issue 22, case 3): two owners demoting (or removing) each
other at the same moment must leave one owner, in real concurrent PostgreSQL transactions.

Each side runs the service in its own thread and its own database connection, inside a transaction
the test holds open until the other side has run too (or has been kept waiting for 1 s): the widest
window a slow commit could give. Without a lock on the owner set both sides counted two owners and
both committed."""

import threading

import pytest
from django.db import connection, transaction

from accounts import lifecycle, services
from accounts.models import Membership, Role
from accounts.tenancy import actor_for_user
from anomalyhub.lib.errors import ConflictError
from tests.factories import MembershipFactory, OrganizationFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
HOLD_S = 1.0


def _race(*calls) -> list:
    """Runs each call in its own thread and transaction; each commits only once all have run (or
    after HOLD_S, when the others are blocked on a lock). Returns each call's result or exception."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)

    def run(i, call):
        try:
            with transaction.atomic():
                results[i] = call()
                try:
                    barrier.wait(timeout=HOLD_S)
                except threading.BrokenBarrierError:
                    pass  # another side waits on a lock we hold: commit and let it go on
        except Exception as exc:  # noqa: BLE001 - the outcome under test
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


@pytest.fixture
def two_owners():
    org = OrganizationFactory(name="Two owners")
    a, b = UserFactory(email="a@race.example"), UserFactory(email="b@race.example")
    return (org, a, MembershipFactory(user=a, organization=org, role=Role.OWNER),
            b, MembershipFactory(user=b, organization=org, role=Role.OWNER))


def _outcome(results, org) -> tuple[int, int, int]:
    done = sum(1 for r in results if not isinstance(r, Exception))
    refused = sum(1 for r in results if isinstance(r, ConflictError))
    return done, refused, Membership.objects.filter(organization=org, role=Role.OWNER).count()


def test_two_owners_demoting_each_other_leave_one_owner(two_owners):
    org, a, ma, b, mb = two_owners
    results = _race(
        lambda: services.change_role(actor=actor_for_user(a, org.pk), membership_id=mb.pk, role=Role.ADMIN),
        lambda: services.change_role(actor=actor_for_user(b, org.pk), membership_id=ma.pk, role=Role.ADMIN))
    assert _outcome(results, org) == (1, 1, 1), results


def test_two_owners_removing_each_other_leave_one_owner(two_owners):
    org, a, ma, b, mb = two_owners
    results = _race(lambda: services.remove_member(actor=actor_for_user(a, org.pk), membership_id=mb.pk),
                    lambda: services.remove_member(actor=actor_for_user(b, org.pk), membership_id=ma.pk))
    assert _outcome(results, org) == (1, 1, 1), results


def test_both_owners_leaving_at_once_leave_one_owner(two_owners):
    org, a, ma, b, mb = two_owners
    results = _race(lambda: services.remove_member(actor=actor_for_user(a, org.pk), membership_id=ma.pk),
                    lambda: services.remove_member(actor=actor_for_user(b, org.pk), membership_id=mb.pk))
    assert _outcome(results, org) == (1, 1, 1), results


def test_an_owner_deleting_their_account_while_the_other_demotes_themself(two_owners):
    org, a, ma, b, mb = two_owners
    MembershipFactory(organization=org, role=Role.MEMBER)  # shared: the last owner may not just vanish
    results = _race(lambda: lifecycle.delete_user(user=a),
                    lambda: services.change_role(actor=actor_for_user(b, org.pk), membership_id=mb.pk,
                                                 role=Role.ADMIN))
    assert _outcome(results, org)[1:] == (1, 1), results
