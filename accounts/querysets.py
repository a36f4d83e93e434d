"""The queryset every tenant-owned model uses. The rules themselves live in tenancy.py."""

from django.db import models


class TenantQuerySet(models.QuerySet):
    def for_actor(self, actor, action: str = "view"):
        """Rows of the organization the actor acts for, if the actor may do `action` there."""
        if actor is None or actor.organization_id is None or not actor.can(action):
            return self.none()
        return self.filter(organization_id=actor.organization_id)


class TenantModel(models.Model):
    """Base for tenant-owned tables: a non-null, indexed organization_id on every row."""

    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True
