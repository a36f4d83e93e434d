"""Accounts mutations: thin adapters over accounts.services (which check every right)."""

from __future__ import annotations

from typing import Annotated

import strawberry
import strawberry_django

from anomalyhub.lib.errors import NotFoundError, PermissionDeniedError

from .. import services
from ..models import Organization, Role
from ..tenancy import SESSION_ORG_KEY, organizations_for
from .base import InputError, actor_for_organization, actor_of, input_errors, pk_of
from .types import ApiKeyType, InvitationType, MembershipType, NewApiKeyType, OrganizationType

OrganizationResult = Annotated[OrganizationType | InputError, strawberry.union("OrganizationResult")]
MembershipResult = Annotated[MembershipType | InputError, strawberry.union("MembershipResult")]
InvitationResult = Annotated[InvitationType | InputError, strawberry.union("InvitationResult")]
NewApiKeyResult = Annotated[NewApiKeyType | InputError, strawberry.union("NewApiKeyResult")]


@strawberry.input
class CreateOrganizationInput:
    name: str


@strawberry.input
class UpdateOrganizationInput:
    name: str | None = None
    retention_days: int | None = None


@strawberry.input
class InviteMemberInput:
    email: str
    role: str = Role.MEMBER


@strawberry.input
class CreateApiKeyInput:
    name: str
    scope: str = "read"


def _organization(info, id) -> Organization:
    """An organization the caller can see (any of a user's; a key's own), else not found."""
    org = organizations_for(actor_of(info)).filter(pk=pk_of(id, "organization")).first()
    if org is None:
        raise NotFoundError(f"Organization {id} not found.")
    return org


def _user_only(info):
    actor = actor_of(info)
    if actor.api_key is not None or actor.user_id is None:
        raise PermissionDeniedError("Only a signed-in user can do this, not an API key.")
    return actor.user


@strawberry.type
class AccountsMutation:
    @strawberry_django.mutation(handle_django_errors=False)
    def create_organization(self, info: strawberry.Info, input: CreateOrganizationInput) -> OrganizationResult:
        user = _user_only(info)
        return input_errors(lambda: services.create_organization(user=user, name=input.name))

    @strawberry_django.mutation(handle_django_errors=False)
    def update_organization(self, info: strawberry.Info, id: strawberry.ID,
                            input: UpdateOrganizationInput) -> OrganizationResult:
        org = _organization(info, id)
        return input_errors(lambda: services.update_organization(
            actor=actor_for_organization(info, org.pk), organization=org, name=input.name,
            retention_days=input.retention_days))

    @strawberry_django.mutation(handle_django_errors=False)
    def delete_organization(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        org = _organization(info, id)
        services.delete_organization(actor=actor_for_organization(info, org.pk), organization=org)
        return id

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Makes this organization the one the session acts for.")
    def switch_organization(self, info: strawberry.Info, id: strawberry.ID) -> OrganizationType:
        _user_only(info)
        org = _organization(info, id)
        info.context.request.session[SESSION_ORG_KEY] = org.pk
        return org

    @strawberry_django.mutation(handle_django_errors=False)
    def change_member_role(self, info: strawberry.Info, id: strawberry.ID, role: str) -> MembershipResult:
        return input_errors(lambda: services.change_role(actor=actor_of(info), membership_id=id, role=role))

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Removes a member; on your own membership it means leaving.")
    def remove_member(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        services.remove_member(actor=actor_of(info), membership_id=id)
        return id

    @strawberry_django.mutation(handle_django_errors=False)
    def invite_member(self, info: strawberry.Info, input: InviteMemberInput) -> InvitationResult:
        return input_errors(lambda: services.invite_member(actor=actor_of(info), email=input.email,
                                                           role=input.role)[0])

    @strawberry_django.mutation(handle_django_errors=False)
    def delete_invitation(self, info: strawberry.Info, id: strawberry.ID) -> strawberry.ID:
        services.delete_invitation(actor=actor_of(info), invitation_id=id)
        return id

    @strawberry_django.mutation(handle_django_errors=False)
    def accept_invitation(self, info: strawberry.Info, token: str) -> MembershipType:
        return services.accept_invitation(user=_user_only(info), token=token)

    @strawberry_django.mutation(handle_django_errors=False,
                                description="Creates an API key; `key` is returned this once and never again.")
    def create_api_key(self, info: strawberry.Info, input: CreateApiKeyInput) -> NewApiKeyResult:
        def create():
            key, raw = services.create_api_key(actor=actor_of(info), name=input.name, scope=input.scope)
            return NewApiKeyType(api_key=key, key=raw)
        return input_errors(create)

    @strawberry_django.mutation(handle_django_errors=False)
    def revoke_api_key(self, info: strawberry.Info, id: strawberry.ID) -> ApiKeyType:
        return services.revoke_api_key(actor=actor_of(info), key_id=id)

