"""Accounts queries: NetBox-style `x(id)` and `xList` fields, offset-paginated, scoped by the types."""

from __future__ import annotations

import strawberry
import strawberry_django
from strawberry_django.pagination import OffsetPaginated

from ..models import ApiKey, Invitation, Membership, Organization
from .base import actor_of, by_id
from .types import ApiKeyType, AuditEventType, InvitationType, MembershipType, MeType, OrganizationType


@strawberry.type
class AccountsQuery:
    @strawberry_django.field(description="Who the caller is and what it may do in its organization.")
    def me(self, info: strawberry.Info) -> MeType:
        actor = actor_of(info)
        org = Organization.objects.filter(pk=actor.organization_id).first() if actor.organization_id else None
        return MeType(user=actor.user if actor.user_id else None, organization=org, role=actor.role,
                      scope=actor.scope, actions=sorted(actor.actions))

    @strawberry_django.field
    def organization(self, id: strawberry.ID) -> OrganizationType | None:
        return by_id(Organization, id)

    organization_list: OffsetPaginated[OrganizationType] = strawberry_django.offset_paginated()

    @strawberry_django.field
    def member(self, id: strawberry.ID) -> MembershipType | None:
        return by_id(Membership, id)

    member_list: OffsetPaginated[MembershipType] = strawberry_django.offset_paginated()

    @strawberry_django.field
    def invitation(self, id: strawberry.ID) -> InvitationType | None:
        return by_id(Invitation, id)

    invitation_list: OffsetPaginated[InvitationType] = strawberry_django.offset_paginated()

    @strawberry_django.field
    def api_key(self, id: strawberry.ID) -> ApiKeyType | None:
        return by_id(ApiKey, id)

    api_key_list: OffsetPaginated[ApiKeyType] = strawberry_django.offset_paginated()

    audit_log: OffsetPaginated[AuditEventType] = strawberry_django.offset_paginated(
        description="Security-relevant events of the organization, newest first (admins and owners).")
