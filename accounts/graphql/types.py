"""GraphQL types of accounts: organizations, members, invitations and API keys (metadata only)."""

from __future__ import annotations

import strawberry
import strawberry_django
from strawberry import auto

from ..models import ApiKey, AuditEvent, Invitation, Membership, Organization, User
from ..tenancy import organizations_for
from .base import TenantScoped, actor_of


@strawberry_django.type(User)
class UserType:
    id: auto
    email: auto
    name: auto
    time_zone: auto

    @classmethod
    def get_queryset(cls, queryset, info, **kwargs):
        # People are visible only as members of the organization the caller acts for.
        actor = actor_of(info)
        if actor.organization_id is None:
            return queryset.none()
        return queryset.filter(memberships__organization_id=actor.organization_id).order_by("pk")


@strawberry_django.type(Organization)
class OrganizationType:
    id: auto
    name: auto
    slug: auto
    retention_days: auto
    created_at: auto

    @classmethod
    def get_queryset(cls, queryset, info, **kwargs):
        return queryset.filter(pk__in=organizations_for(actor_of(info)).values("pk")).order_by("pk")

    @strawberry_django.field(description="The caller's role in this organization (null for API keys).")
    def role(self, info: strawberry.Info) -> str | None:
        actor = actor_of(info)
        if actor.api_key is not None or actor.user_id is None:
            return None
        if self.pk == actor.organization_id:
            return actor.role
        return Membership.objects.filter(user_id=actor.user_id, organization_id=self.pk).values_list(
            "role", flat=True).first()


@strawberry_django.type(Membership)
class MembershipType(TenantScoped):
    id: auto
    user: UserType
    role: auto
    created_at: auto


@strawberry_django.type(Invitation)
class InvitationType(TenantScoped):
    scope_action = "manage"  # as in REST: only admins see who was invited

    id: auto
    email: auto
    role: auto
    created_at: auto
    expires_at: auto
    accepted_at: auto


@strawberry_django.type(ApiKey, description="An API key's metadata; the secret is shown once, on creation.")
class ApiKeyType(TenantScoped):
    scope_action = "manage"

    id: auto
    name: auto
    scope: auto
    prefix: auto
    created_at: auto
    last_used_at: auto
    revoked_at: auto


@strawberry.type
class NewApiKeyType:
    api_key: ApiKeyType
    key: str = strawberry.field(description="The full key. It is not stored and cannot be shown again.")


@strawberry.type
class MeType:
    user: UserType | None
    organization: OrganizationType | None
    role: str | None
    scope: str | None
    actions: list[str]


@strawberry_django.type(AuditEvent, description="A security-relevant action (sign-ins, keys, members, webhooks).")
class AuditEventType(TenantScoped):
    scope_action = "manage"  # as in REST: admins and owners only
    ordering = ("-created_at", "-pk")

    id: auto
    created_at: auto
    action: auto
    actor_label: auto
    target_type: auto
    target_id: auto
    target_label: auto
    ip: str | None
    details: strawberry.scalars.JSON
