"""The audit log: who did what security-relevant thing, when, from where.

Services call `record(...)` inside their own transaction, so an action that rolls back leaves no
event and an event never claims an action that did not happen. Logins are recorded from Django's
auth signals, so every way in (REST, the allauth pages, the admin) is covered the same way.
Events are read through `AuditEvent.objects.for_actor(actor, "manage")`: admins and owners only.
"""

from __future__ import annotations

import logging

from django.contrib.auth import signals as auth_signals
from django.dispatch import receiver

from .models import AuditEvent, Membership, User

logger = logging.getLogger(__name__)

ACTIONS = (
    "login", "login_failed", "logout",
    "api_key.created", "api_key.revoked",
    "invitation.created", "invitation.accepted", "invitation.deleted",
    "member.role_changed", "member.removed", "member.left",
    "organization.updated",
    "webhook.created", "webhook.updated", "webhook.deleted", "webhook.secret_rotated",
)


def client_ip(request) -> str | None:
    """The client's address: REMOTE_ADDR, which the ASGI edge (anomalyhub.lib.client_address) has set
    from X-Forwarded-For only where a trusted proxy (TRUSTED_PROXIES) sent it."""
    django_request = getattr(request, "_request", request)
    return getattr(django_request, "META", {}).get("REMOTE_ADDR") or None


def _actor_fields(actor) -> dict:
    if actor is None:
        return {"actor_user": None, "actor_label": "system"}
    if getattr(actor, "api_key", None) is not None:
        return {"actor_user": actor.credited_user, "actor_label": f"api-key:{actor.api_key.prefix}"}
    if getattr(actor, "system", False):
        return {"actor_user": None, "actor_label": "system"}
    user = actor.user
    return {"actor_user": user if getattr(user, "pk", None) else None, "actor_label": getattr(user, "email", "")}


def record(*, action: str, actor=None, organization_id=None, target=None, target_label: str = "",
           details: dict | None = None, request=None) -> AuditEvent:
    """Writes one event. `actor` is a tenancy.Actor (None: the system); organization_id defaults to
    the actor's. `target` is the model instance acted on (its type and id are stored)."""
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; add it to accounts.audit.ACTIONS")
    org_id = organization_id if organization_id is not None else getattr(actor, "organization_id", None)
    return AuditEvent.objects.create(
        organization_id=org_id, action=action, **_actor_fields(actor),
        target_type=target._meta.model_name if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        target_label=(target_label or (str(target) if target is not None else ""))[:300],
        ip=client_ip(request) if request is not None else None, details=details or {},
    )


def _record_for_user_orgs(action: str, user: User, request, details=None) -> None:
    """A user-level event (a login) shown to the admins of every organization the user is in."""
    org_ids = list(Membership.objects.filter(user=user).values_list("organization_id", flat=True)) or [None]
    ip = client_ip(request) if request is not None else None
    AuditEvent.objects.bulk_create([
        AuditEvent(organization_id=org_id, action=action, actor_user=user, actor_label=user.email,
                   target_type="user", target_id=str(user.pk), target_label=user.email, ip=ip,
                   details=details or {})
        for org_id in org_ids])


@receiver(auth_signals.user_logged_in, dispatch_uid="audit-login")
def _on_login(sender, request, user, **kwargs):
    _record_for_user_orgs("login", user, request)


@receiver(auth_signals.user_logged_out, dispatch_uid="audit-logout")
def _on_logout(sender, request, user, **kwargs):
    if user is not None and getattr(user, "pk", None):
        _record_for_user_orgs("logout", user, request)


@receiver(auth_signals.user_login_failed, dispatch_uid="audit-login-failed")
def _on_login_failed(sender, credentials, request=None, **kwargs):
    # Django has already masked the password in `credentials`; only the address is kept.
    email = str(credentials.get("email") or credentials.get("username") or "").strip().lower()[:254]
    user = User.objects.filter(email=email).first() if email else None
    if user is not None:
        _record_for_user_orgs("login_failed", user, request)
        return
    AuditEvent.objects.create(organization=None, action="login_failed", actor_label=email,
                              target_type="user", target_label=email,
                              ip=client_ip(request) if request is not None else None)
