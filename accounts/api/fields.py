from rest_framework import serializers

from ..tenancy import actor_for_request


class TenantPrimaryKeyRelatedField(serializers.PrimaryKeyRelatedField):
    """A related id that must belong to the caller's organization; another tenant's id is
    answered exactly like a missing one ("Invalid pk")."""

    def get_queryset(self):
        request = self.context["request"]
        return super().get_queryset().for_actor(actor_for_request(request), "view")
