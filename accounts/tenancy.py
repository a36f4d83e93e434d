"""Tenancy: the ONE place that decides which organization a request, a socket or a task acts
for, and what it may do there. Everything else asks `actor.can(...)` or `qs.for_actor(...)`.

Actions: "view" (read), "change" (create/edit domain objects), "ingest" (write points),
"manage" (members, invitations, API keys, organization settings), "own" (delete the
organization, grant ownership).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from anomalyhub.lib.errors import NotFoundError, PermissionDeniedError

from .models import ApiKey, Membership, Organization, Role

ROLE_ACTIONS: dict[str, frozenset[str]] = {
    Role.VIEWER: frozenset({"view"}),
    Role.MEMBER: frozenset({"view", "change", "ingest"}),
    Role.ADMIN: frozenset({"view", "change", "ingest", "manage"}),
    Role.OWNER: frozenset({"view", "change", "ingest", "manage", "own"}),
}
# An API key never does more than its scope allows, whatever its creator's role.
SCOPE_ACTIONS: dict[str, frozenset[str]] = {
    "read": frozenset({"view"}),
    "ingest": frozenset({"view", "ingest"}),
    "admin": frozenset({"view", "change", "ingest", "manage"}),
}
ALL_ACTIONS = ROLE_ACTIONS[Role.OWNER]
ORG_HEADER = "X-Organization"
SESSION_ORG_KEY = "organization_id"


@dataclass(frozen=True)
class Actor:
    """Who acts, for which organization, allowed which actions.

    `user` is the signed-in person and carries that person's own rights ("my" subscriptions and
    deliveries, leaving an organization, accepting an invitation). An API key acts for its
    organization with its scope alone, never as the person who made it: its actor has no user, so
    nothing that asks "is this the caller's own ...?" can ever match a key. `credited_user` names
    who a record is credited to (created_by, the audit log's actor), never who may do something."""

    user: object | None
    organization_id: int | None
    role: str | None = None
    api_key: ApiKey | None = None
    system: bool = False
    actions: frozenset[str] = field(default=frozenset())

    def can(self, action: str) -> bool:
        return self.organization_id is not None and action in self.actions

    def owns(self, user_id) -> bool:
        """Whether a row of `user_id` (a subscription, a delivery, a membership) is the caller's own.
        Only a signed-in person owns anything: a key, a task or a row without a user never matches."""
        return self.user_id is not None and user_id == self.user_id

    def require(self, action: str) -> None:
        if not self.can(action):
            raise PermissionDeniedError(f"Your role or API key scope does not allow '{action}' here.")

    @property
    def user_id(self):
        return getattr(self.user, "pk", None)

    @property
    def credited_user(self):
        """The person a record names as its author: the signed-in user, or the person who made the
        key (None once they are deleted). For crediting only; rights come from `actions` and `user`."""
        if self.api_key is not None:
            return self.api_key.created_by
        return self.user if self.user_id else None

    @property
    def scope(self) -> str | None:
        return self.api_key.scope if self.api_key else None


ANONYMOUS = Actor(user=None, organization_id=None)


def actor_for_membership(user, membership: Membership | None) -> Actor:
    if membership is None:
        return Actor(user=user, organization_id=None)
    return Actor(user=user, organization_id=membership.organization_id, role=membership.role,
                 actions=ROLE_ACTIONS[membership.role])


def actor_for_api_key(key: ApiKey) -> Actor:
    # user=None: a key never inherits what its creator may do as a person (see Actor).
    return Actor(user=None, organization_id=key.organization_id, api_key=key,
                 actions=SCOPE_ACTIONS[key.scope])


def system_actor(organization_id: int) -> Actor:
    """For Celery tasks and commands acting on behalf of an organization they were given."""
    return Actor(user=None, organization_id=organization_id, system=True, actions=ALL_ACTIONS)


def _membership(user, org_ref) -> Membership | None:
    qs = Membership.objects.filter(user=user).select_related("organization")
    if org_ref in (None, ""):
        return qs.order_by("created_at", "pk").first()
    ref = str(org_ref)
    return (qs.filter(organization_id=int(ref)) if ref.isdigit() else qs.filter(organization__slug=ref)).first()


def is_active_member(user_id, organization_id) -> bool:
    """Whether the person is (still) an active member of the organization: what anything sent to
    them on its behalf (alert emails) checks at the moment of sending."""
    return user_id is not None and Membership.objects.filter(user_id=user_id, organization_id=organization_id,
                                                             user__is_active=True).exists()


def actor_for_user(user, org_ref=None) -> Actor:
    """A signed-in user acting for org_ref (id or slug), or their first organization."""
    if user is None or not user.is_authenticated:
        return ANONYMOUS
    return actor_for_membership(user, _membership(user, org_ref))


def actor_for_request(request) -> Actor:
    """The actor of an HTTP request (DRF or plain Django), cached on the request.

    An API key decides the organization itself; a session user picks one with the
    X-Organization header, else the one chosen in the session, else their first.
    """
    django_request = getattr(request, "_request", request)
    cached = getattr(django_request, "_anomalyhub_actor", None)
    if cached is not None:
        return cached
    auth = getattr(request, "auth", None)
    if isinstance(auth, ApiKey):
        actor = actor_for_api_key(auth)
    else:
        user = getattr(request, "user", None)
        ref = django_request.headers.get(ORG_HEADER)
        if not ref and hasattr(django_request, "session"):
            ref = django_request.session.get(SESSION_ORG_KEY)
        actor = actor_for_user(user, ref)
        if actor.organization_id is None and ref and not django_request.headers.get(ORG_HEADER):
            actor = actor_for_user(user)  # the session's choice went stale (membership removed)
    django_request._anomalyhub_actor = actor
    return actor


def actor_for_org(request, organization_id) -> Actor:
    """The request's actor re-resolved for a specific organization (for /organizations/{id}/)."""
    base = actor_for_request(request)
    if base.api_key is not None:
        return base if str(base.organization_id) == str(organization_id) else ANONYMOUS
    return actor_for_user(base.user, organization_id)


def get_for_actor(qs, actor: Actor, pk, action: str = "view"):
    """One object of the actor's organization: 404 if missing or another tenant's, 403 if the
    actor may see it but not do `action` to it."""
    obj = qs.for_actor(actor, "view").filter(pk=pk).first() if _is_pk(pk) else None
    if obj is None:
        raise NotFoundError(f"{qs.model._meta.verbose_name.capitalize()} {pk} not found.")
    actor.require(action)
    return obj


def organizations_for(actor: Actor):
    """Organizations the actor can see: all of a user's memberships, or the key's one."""
    if actor.api_key is not None or actor.system:
        return Organization.objects.filter(pk=actor.organization_id)
    if actor.user is None:
        return Organization.objects.none()
    return Organization.objects.filter(memberships__user=actor.user)


def _is_pk(value) -> bool:
    return str(value).isdigit() and len(str(value)) < 19


TICKET_SALT = "anomalyhub.live-ticket"
TICKET_MAX_AGE = 60


def issue_ticket(actor: Actor, session: str | None = None) -> str:
    """A short-lived signed ticket for opening a WebSocket as this actor (query strings end up in
    logs, so they carry this, never a long-lived key). `session`: the digest of the signed-in
    session asking for it (accounts.socket_access), so signing out also closes that socket."""
    from django.core import signing

    return signing.dumps({"u": actor.user_id, "o": actor.organization_id,
                          "k": actor.api_key.pk if actor.api_key else None, "s": session},
                         salt=TICKET_SALT, compress=True)


def _ticket_data(ticket: str) -> dict | None:
    from django.core import signing

    try:
        return signing.loads(ticket, salt=TICKET_SALT, max_age=TICKET_MAX_AGE)
    except signing.BadSignature:
        return None


def ticket_session(ticket: str) -> str | None:
    """The digest of the session that asked for the ticket, if one did."""
    return (_ticket_data(ticket) or {}).get("s")


def actor_for_ticket(ticket: str) -> Actor:
    """The actor a ticket was issued to, re-checked now (a revoked key or membership fails)."""
    from django.contrib.auth import get_user_model

    data = _ticket_data(ticket)
    if data is None:
        return ANONYMOUS
    if data.get("k"):
        key = ApiKey.objects.filter(pk=data["k"], revoked_at__isnull=True).select_related("created_by").first()
        return actor_for_api_key(key) if key else ANONYMOUS
    user = get_user_model().objects.filter(pk=data.get("u"), is_active=True).first()
    return actor_for_user(user, data.get("o")) if user else ANONYMOUS
