"""Deleting a person: what goes, what stays and is anonymised (docs/data-lifecycle.md).

- Organizations where they are the only member are deleted with everything they own.
- Where others remain, the person must not be the last owner (hand ownership over first).
- Their memberships, email addresses, pending invitations and alert subscriptions go.
- Shared records of the organizations stay, no longer pointing at them: rules, keys, anomalies'
  feedback and training runs keep a null author (SET_NULL); audit events and the delivery log keep
  their rows with the address replaced (apps anonymise their own rows on the pre_delete signal).
"""

from __future__ import annotations

import logging

from django.db import transaction
from django.db.models import Count, Q
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from anomalyhub.lib.errors import ConflictError

from .models import AuditEvent, Invitation, Membership, Organization, Role, User
from .services import lock_owner_sets

logger = logging.getLogger(__name__)


def anonymous_label(user_id) -> str:
    return f"deleted user {user_id}"


def _blocking_orgs(user: User) -> list[str]:
    """Shared organizations whose last owner is this user."""
    shared = (Membership.objects.filter(user=user, role=Role.OWNER)
              .annotate(members=Count("organization__memberships"),
                        owners=Count("organization__memberships",
                                     filter=Q(organization__memberships__role=Role.OWNER)))
              .filter(members__gt=1, owners=1).select_related("organization"))
    return [m.organization.name for m in shared]


@transaction.atomic
def delete_user(*, user: User) -> dict:
    """Deletes `user` (they ask for it themselves; operators may call it too). Not idempotent in the
    sense of finding the user again, but safe to retry: a second call finds nothing to delete.

    Refuses with ConflictError while the user is the last owner of an organization others still use."""
    user = User.objects.select_for_update().get(pk=user.pk)
    lock_owner_sets(Membership.objects.filter(user=user, role=Role.OWNER).values_list("organization_id", flat=True))
    blocking = _blocking_orgs(user)
    if blocking:
        raise ConflictError(f"You are the last owner of {', '.join(blocking)}; make another member owner "
                            "(or delete the organization) first.", details={"organizations": blocking})
    solo = list(Organization.objects.annotate(members=Count("memberships"))
                .filter(memberships__user=user, members=1))
    for org in solo:
        org.delete()  # cascades; watchlists.lifecycle drops the store's rows
    Invitation.objects.filter(email__iexact=user.email, accepted_at__isnull=True).delete()
    # Their sessions need no sweep: they name a user id that no longer exists (ids are never reused),
    # so they authenticate no one and expire on their own.
    user_id = user.pk
    user.delete()
    logger.info("user deleted", extra={"user_id": user_id, "organizations_deleted": len(solo)})
    return {"user_id": user_id, "organizations_deleted": [o.pk for o in solo]}


@receiver(pre_delete, sender=User, dispatch_uid="accounts.lifecycle.audit")
def _anonymise_audit(sender, instance, **kwargs):
    label = anonymous_label(instance.pk)
    events = AuditEvent.objects.filter(Q(actor_user=instance) | Q(actor_label__iexact=instance.email))
    events.update(actor_label=label, ip=None)
    AuditEvent.objects.filter(Q(target_type="user", target_id=str(instance.pk))
                              | Q(target_label__iexact=instance.email)).update(target_label=label, ip=None)
