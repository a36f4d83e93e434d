"""Alert subscriptions: each user manages their own; admins ("manage") see and edit everyone's."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from accounts.tenancy import Actor, get_for_actor
from anomalyhub.lib.errors import InvalidError, PermissionDeniedError

from ..models import AlertSubscription, Channel, QuietMode, Target
from ..noise import INCIDENT_BUCKET_SECONDS, Config

TARGET_FIELDS = ("watchlist", "series", "rule", "detector")


def owned_by(queryset, actor: Actor):
    """Narrows an already tenant-scoped queryset of per-user rows (subscriptions, deliveries) to
    the caller's own; actors that may "manage" keep the organization's. REST and GraphQL share it."""
    if actor.can("manage") or actor.system:
        return queryset
    # Only a signed-in person has rows of their own; a key below "admin" sees none (tenancy.Actor).
    return queryset.filter(user_id=actor.user_id) if actor.user_id else queryset.none()


def visible_subscriptions(actor: Actor):
    """The caller's own subscriptions; all of the organization's for actors that may "manage"."""
    return owned_by(AlertSubscription.objects.for_actor(actor, "view"), actor)


def get_subscription(*, actor: Actor, subscription_id) -> AlertSubscription:
    return get_for_actor(visible_subscriptions(actor).select_related("user"), actor, subscription_id, "view")


def validate(sub: AlertSubscription) -> None:
    errors = {}
    wanted = sub.target if sub.target in TARGET_FIELDS else None
    for name in TARGET_FIELDS:
        has = getattr(sub, f"{name}_id") is not None
        if name == wanted and not has:
            errors[name] = [f"A '{name}' subscription needs a {name}."]
        elif name != wanted and has:
            errors[name] = [f"Only a '{name}' subscription names a {name}."]
    channels = sub.channels or []
    if not channels or any(c not in Channel.values for c in channels) or len(set(channels)) != len(channels):
        errors["channels"] = ['Give one or both of "email" and "webhook".']
    if Channel.WEBHOOK in channels and sub.webhook_id is None:
        errors["webhook"] = ["The webhook channel needs a webhook endpoint."]
    if (sub.quiet_start is None) != (sub.quiet_end is None):
        errors["quiet_end"] = ["Quiet hours need both a start and an end."]
    if errors:
        raise InvalidError("The subscription is not valid; see details.", details=errors)


@transaction.atomic
def save_subscription(*, actor: Actor, subscription: AlertSubscription) -> AlertSubscription:
    """Creates (for the caller) or updates a subscription; editing someone else's needs "manage"."""
    if subscription.pk is None:
        subscription.organization_id = actor.organization_id
        subscription.user_id = subscription.user_id or _new_subscriber(actor)
    _require_owner(actor, subscription)
    validate(subscription)
    subscription.save()
    return subscription


def delete_subscription(*, actor: Actor, subscription: AlertSubscription) -> None:
    _require_owner(actor, subscription)
    subscription.delete()


def snooze(*, actor: Actor, subscription: AlertSubscription, until: datetime) -> AlertSubscription:
    _require_owner(actor, subscription)
    AlertSubscription.objects.filter(pk=subscription.pk).update(snooze_until=until)
    subscription.snooze_until = until
    return subscription


def _new_subscriber(actor: Actor):
    """Whose a new subscription is: the signed-in person's own; an admin key's (which may manage
    everyone's) its maker's. Other keys cannot subscribe anyone: a subscription is a person's."""
    if actor.user_id:
        return actor.user_id
    if actor.can("manage") and actor.credited_user is not None:
        return actor.credited_user.pk
    raise PermissionDeniedError("Alert subscriptions belong to a person: sign in as them, or use an admin API key.")


def _require_owner(actor: Actor, subscription: AlertSubscription) -> None:
    if actor.system or actor.can("manage"):
        return
    if not actor.owns(subscription.user_id):
        raise PermissionDeniedError("You can only change your own subscriptions; signed in as yourself, "
                                    "or with an admin API key.")


def config_for(sub: AlertSubscription, time_zone: str | None = None) -> Config:
    window = sub.group_window_seconds
    if sub.target == Target.WATCHLIST and sub.incident_min_symbols and not window:
        window = INCIDENT_BUCKET_SECONDS  # symbols moving in the same minute become one incident
    return Config(
        cooldown=sub.cooldown_seconds, window=window, quiet_start=sub.quiet_start, quiet_end=sub.quiet_end,
        quiet_drop=sub.quiet_mode == QuietMode.DROP,
        time_zone=time_zone or (sub.user.time_zone if sub.user_id else "UTC") or "UTC",
        snooze_until=sub.snooze_until, session_only=sub.session_only, notify_resolution=sub.notify_resolution,
        resolve_after=sub.resolve_after_seconds, flap_threshold=sub.flap_threshold,
        flap_window=sub.flap_window_seconds)
