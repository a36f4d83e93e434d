"""Account and organization services. Keyword-only, actor first; each checks its own rights."""

import hmac
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils import timezone
from django.utils.text import slugify

from anomalyhub.lib.errors import ConflictError, InvalidError, NotFoundError, PermissionDeniedError
from anomalyhub.lib.localcache import TTLCache

from . import audit
from .models import ApiKey, ApiKeyScope, Invitation, Membership, Organization, Role, User, hash_secret
from .tenancy import Actor, get_for_actor

logger = logging.getLogger(__name__)
INVITATION_TTL = timedelta(days=7)


def _unique_slug(name: str) -> str:
    base = slugify(name)[:100] or "org"
    slug, n = base, 1
    while Organization.objects.filter(slug=slug).exists():
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
def create_organization(*, user: User, name: str) -> Organization:
    """Creates an organization with `user` as its owner. Any signed-in user may."""
    name = (name or "").strip()
    if not name:
        raise InvalidError("Organization name is required.", details={"name": ["This field is required."]})
    for _ in range(3):  # a concurrent creator may take the same slug between check and insert
        try:
            with transaction.atomic():
                org = Organization.objects.create(name=name, slug=_unique_slug(name))
            break
        except IntegrityError:
            continue
    else:
        raise ConflictError("Could not allocate a unique slug; try again.")
    Membership.objects.create(user=user, organization=org, role=Role.OWNER)
    logger.info("organization created", extra={"org_id": org.pk, "user_id": user.pk})
    return org


def update_organization(*, actor: Actor, organization: Organization, name=None, retention_days=None) -> Organization:
    actor.require("manage")
    if name is not None:
        if not name.strip():
            raise InvalidError("Organization name cannot be empty.", details={"name": ["May not be blank."]})
        organization.name = name.strip()
    if retention_days is not None:
        organization.retention_days = retention_days
    organization.save()
    audit.record(action="organization.updated", actor=actor, organization_id=organization.pk, target=organization,
                 details={"name": organization.name, "retention_days": organization.retention_days})
    return organization


def delete_organization(*, actor: Actor, organization: Organization) -> None:
    """Deletes the organization and, by cascade, everything it owns. Owners only."""
    actor.require("own")
    organization.delete()


def _owner_count(organization_id: int) -> int:
    return Membership.objects.filter(organization_id=organization_id, role=Role.OWNER).count()


def lock_owner_sets(organization_ids) -> None:
    """Serialises every change to these organizations' sets of owners (demote, remove, leave, delete
    an account) on the organizations' rows, taken before any membership row and in id order. Locking
    only the membership changed let two owners demote each other at once: each counted two owners,
    both committed, none was left. The second now waits, then counts what the first committed.
    NO KEY UPDATE: rows that merely refer to an organization (points, anomalies) take KEY SHARE and
    are never held up by it."""
    ids = sorted({pk for pk in organization_ids if pk is not None})
    if ids:
        list(Organization.objects.select_for_update(no_key=True).filter(pk__in=ids).order_by("pk").values("pk"))


@transaction.atomic
def change_role(*, actor: Actor, membership_id, role: str) -> Membership:
    """Admins change member/viewer/admin roles; only owners grant or take away ownership."""
    if role not in Role.values:
        raise InvalidError(f"Unknown role '{role}'.", details={"role": [f"Choose one of {Role.values}."]})
    lock_owner_sets([actor.organization_id])
    membership = get_for_actor(Membership.objects.select_for_update(), actor, membership_id, "manage")
    if Role.OWNER in (role, membership.role):
        actor.require("own")
    if membership.role == Role.OWNER and role != Role.OWNER and _owner_count(membership.organization_id) <= 1:
        raise ConflictError("An organization needs at least one owner; make someone else owner first.")
    previous, membership.role = membership.role, role
    membership.save(update_fields=["role"])
    audit.record(action="member.role_changed", actor=actor, target=membership, target_label=membership.user.email,
                 details={"from": previous, "to": role})
    return membership


@transaction.atomic
def remove_member(*, actor: Actor, membership_id) -> None:
    """Removes a member (admins), or lets a user leave (their own membership)."""
    lock_owner_sets([actor.organization_id])
    membership = get_for_actor(Membership.objects.select_for_update(), actor, membership_id, "view")
    leaving = actor.owns(membership.user_id)  # a person leaving; never an API key, whoever made it
    if not leaving:
        actor.require("manage")
        if membership.role == Role.OWNER:
            actor.require("own")
    if membership.role == Role.OWNER and _owner_count(membership.organization_id) <= 1:
        raise ConflictError("The last owner cannot leave; make another member owner first.")
    audit.record(action="member.left" if leaving else "member.removed", actor=actor,
                 target=membership, target_label=membership.user.email, details={"role": membership.role})
    membership.delete()


def invite_member(*, actor: Actor, email: str, role: str = Role.MEMBER) -> tuple[Invitation, str]:
    """Creates an invitation and emails its link. Returns (invitation, token); the token is
    not stored, only its hash."""
    actor.require("manage")
    if role not in Role.values:
        raise InvalidError(f"Unknown role '{role}'.", details={"role": [f"Choose one of {Role.values}."]})
    if role == Role.OWNER:
        actor.require("own")
    email = (email or "").strip().lower()
    if Membership.objects.filter(organization_id=actor.organization_id, user__email=email).exists():
        raise ConflictError(f"{email} is already a member.")
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organization_id=actor.organization_id, email=email, role=role, token_hash=hash_secret(token),
        invited_by=actor.credited_user, expires_at=timezone.now() + INVITATION_TTL,
    )
    audit.record(action="invitation.created", actor=actor, target=invitation, target_label=email,
                 details={"role": role})
    org = invitation.organization
    link = f"{settings.SITE_URL}/invitations/accept/?token={token}"
    transaction.on_commit(lambda: send_mail(
        f"You are invited to {org.name} on AnomalyHub",
        f"You have been invited to join {org.name} as {role}.\n\nAccept: {link}\n\nThe link expires in 7 days.",
        None, [email],
    ))
    return invitation, token


@transaction.atomic
def accept_invitation(*, user: User, token: str) -> Membership:
    invitation = Invitation.objects.select_for_update().filter(token_hash=hash_secret(token or "")).first()
    if invitation is None or not invitation.is_pending:
        raise NotFoundError("This invitation is invalid, expired or already used.")
    if invitation.email.lower() != user.email.lower():
        raise PermissionDeniedError("This invitation was sent to a different email address.")
    membership, _ = Membership.objects.get_or_create(
        user=user, organization_id=invitation.organization_id, defaults={"role": invitation.role})
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    from .tenancy import actor_for_membership

    audit.record(action="invitation.accepted", actor=actor_for_membership(user, membership), target=membership,
                 target_label=user.email, details={"role": membership.role})
    return membership


def delete_invitation(*, actor: Actor, invitation_id) -> None:
    invitation = get_for_actor(Invitation.objects.all(), actor, invitation_id, "manage")
    audit.record(action="invitation.deleted", actor=actor, target=invitation, target_label=invitation.email)
    invitation.delete()


def create_api_key(*, actor: Actor, name: str, scope: str = ApiKeyScope.READ) -> tuple[ApiKey, str]:
    """Creates a key; returns (key, raw). The raw key is shown once and never stored."""
    actor.require("manage")
    if scope not in ApiKeyScope.values:
        raise InvalidError(f"Unknown scope '{scope}'.", details={"scope": [f"Choose one of {ApiKeyScope.values}."]})
    name = (name or "").strip()
    if not name:
        raise InvalidError("A key needs a name.", details={"name": ["This field is required."]})
    prefix = ApiKey.PREFIX + secrets.token_hex(4)
    raw = f"{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKey.objects.create(organization_id=actor.organization_id, name=name, scope=scope, prefix=prefix,
                                key_hash=hash_secret(raw), created_by=actor.credited_user)
    audit.record(action="api_key.created", actor=actor, target=key, details={"scope": scope})
    return key, raw


def revoke_api_key(*, actor: Actor, key_id) -> ApiKey:
    key = get_for_actor(ApiKey.objects.all(), actor, key_id, "manage")
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        key.save(update_fields=["revoked_at"])
        audit.record(action="api_key.revoked", actor=actor, target=key, details={"scope": key.scope})
    return key


# Every API request resolves its key, and the lookup was a third of a small request's time. Keys
# resolved in this process are remembered for API_KEY_CACHE_SECONDS by the hash of the raw key
# (only a caller holding the secret can hit an entry). Revoking, changing or deleting a key drops
# it here at once (the receiver below); other processes stop accepting it within that time.
_RESOLVED = TTLCache("API_KEY_CACHE_SECONDS", 5)


def resolve_api_key(raw: str) -> ApiKey | None:
    """The active key for a raw `ahk_xxxxxxxx_secret` string, or None."""
    digest = hash_secret(raw)
    hit = _RESOLVED.get(digest)
    if hit is not None:
        return hit
    prefix, sep, _ = raw[len(ApiKey.PREFIX):].partition("_")
    if not sep:
        return None
    key = (ApiKey.objects.select_related("created_by")
           .filter(prefix=ApiKey.PREFIX + prefix, revoked_at__isnull=True).first())
    if key is None or not hmac.compare_digest(key.key_hash, digest):
        return None
    _RESOLVED.put(digest, key)
    return key


@receiver([post_save, post_delete], sender=ApiKey)
def _forget_resolved_key(sender, instance: ApiKey, **kwargs) -> None:
    _RESOLVED.forget(lambda digest, _: digest == instance.key_hash)


@receiver(post_delete, sender=User)
def _forget_deleted_users_keys(sender, instance: User, **kwargs) -> None:
    # Their keys live on with created_by set to NULL by a bulk UPDATE (no signal): drop the cached
    # copies, which still hold the deleted user.
    _RESOLVED.discard_where(lambda _, key: key.created_by_id == instance.pk)


@transaction.atomic
def bootstrap_org(*, email: str, password: str, org_name: str, key_name: str = "bootstrap") -> tuple:
    """Creates (or finds) a verified user and their organization, and a new admin API key.
    Idempotent in user and organization: re-running only adds a key."""
    from allauth.account.models import EmailAddress

    email = email.strip().lower()
    user = User.objects.filter(email=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=password)
    EmailAddress.objects.update_or_create(user=user, email=email, defaults={"verified": True, "primary": True})
    membership = (Membership.objects.filter(user=user, organization__name=org_name, role=Role.OWNER)
                  .select_related("organization").first())
    org = membership.organization if membership else create_organization(user=user, name=org_name)
    from .tenancy import actor_for_user

    key, raw = create_api_key(actor=actor_for_user(user, org.pk), name=key_name, scope=ApiKeyScope.ADMIN)
    return user, org, raw
