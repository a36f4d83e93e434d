"""What deleting a user means for alerts: their subscriptions go (a cascade); the delivery log of
the organization keeps its rows, with the person's address blanked (docs/data-lifecycle.md)."""

from django.conf import settings
from django.db.models.signals import pre_delete
from django.dispatch import receiver

from .models import Notification


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="alerts.lifecycle.user")
def _user_deleted(sender, instance, **kwargs):
    Notification.objects.filter(user=instance).update(email="")
    Notification.objects.filter(user__isnull=True, email__iexact=instance.email).update(email="")
