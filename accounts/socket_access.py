"""An open WebSocket (live feed, GraphQL) ends when the access it was opened with ends.

A socket is authorised once, when it connects, and may then stay open for days. Without this, a
revoked API key, a removed member, a person who signed out, was deactivated or changed their
password kept receiving the organization's live data for as long as their socket lived.

- Each socket joins one channel-layer group per thing whose end must close it (`socket_groups`):
  its API key, or its person's membership in the organization, the person, and the signed-in
  session it came from.
- Model signals below publish `access.revoked` to those groups once the change commits; every
  process closes its sockets in them (`AccessBoundConsumer`). Signals, not the services, so every
  path (API, GraphQL, Django admin, a cascade from a deleted organization or person) is covered.
- The pub/sub layer delivers at most once (Redis restarting at that moment loses the message), so
  each socket also re-checks its access every WS_ACCESS_RECHECK_SECONDS (`still_valid`).

Role changes close too: a GraphQL socket runs queries and mutations with the role it connected
with, so a demoted admin must reconnect as what they now are."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from importlib import import_module

from channels.auth import get_user
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth import user_logged_out
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from anomalyhub.lib.channel_layer import group_send_after_commit

from .models import ApiKey, Membership, User
from .tenancy import ANONYMOUS, Actor, actor_for_ticket, ticket_session

logger = logging.getLogger(__name__)
REVOKED = "access.revoked"


def recheck_seconds() -> float:
    return float(settings.WS_ACCESS_RECHECK_SECONDS)


def session_digest(session_key: str) -> str:
    """What names a session in a group or a ticket: never the key itself (tickets end up in logs)."""
    return hashlib.sha256(session_key.encode()).hexdigest()[:40]


def key_group(key_id: int) -> str:
    return f"access.key.{key_id}"


def member_group(organization_id: int, user_id: int) -> str:
    return f"access.member.{organization_id}.{user_id}"


def user_group(user_id: int) -> str:
    return f"access.user.{user_id}"


def session_group(digest: str) -> str:
    return f"access.session.{digest}"


def socket_groups(actor: Actor, session: str | None) -> list[str]:
    """The groups a socket of this actor joins; `session` is the digest of the session it came from."""
    if actor.api_key is not None:
        return [key_group(actor.api_key.pk)]
    groups = [member_group(actor.organization_id, actor.user_id), user_group(actor.user_id)]
    return groups + [session_group(session)] if session else groups


def revoke(*groups: str) -> None:
    """Closes every socket in these groups, in every process, once the current transaction commits."""
    group_send_after_commit([(group, {"type": REVOKED}) for group in groups],
                            "their sockets close at their next access re-check instead")


@receiver(post_save, sender=ApiKey, dispatch_uid="socket_access.key_saved")
def _key_saved(sender, instance: ApiKey, created: bool, **kwargs) -> None:
    if not created and instance.revoked_at is not None:
        revoke(key_group(instance.pk))


@receiver(post_delete, sender=ApiKey, dispatch_uid="socket_access.key_deleted")
def _key_deleted(sender, instance: ApiKey, **kwargs) -> None:
    revoke(key_group(instance.pk))


@receiver(post_save, sender=Membership, dispatch_uid="socket_access.membership_saved")
def _membership_saved(sender, instance: Membership, created: bool, **kwargs) -> None:
    if not created:  # a role change (the only other field that changes)
        revoke(member_group(instance.organization_id, instance.user_id))


@receiver(post_delete, sender=Membership, dispatch_uid="socket_access.membership_deleted")
def _membership_deleted(sender, instance: Membership, **kwargs) -> None:
    revoke(member_group(instance.organization_id, instance.user_id))


@receiver(pre_save, sender=User, dispatch_uid="socket_access.user_saving")
def _user_saving(sender, instance: User, update_fields=None, **kwargs) -> None:
    # A new password ends every session (Django's session auth hash), so it ends the sockets too,
    # as deactivation does. A sign-in also saves the user (update_fields=["last_login"]) and must
    # not: only a save that may write the password or is_active reads the stored row to compare.
    instance.ends_socket_access = False
    if instance.pk is None or (update_fields is not None and not {"password", "is_active"} & set(update_fields)):
        return
    stored = User.objects.filter(pk=instance.pk).values_list("password", "is_active").first()
    instance.ends_socket_access = stored is not None and (
        stored[0] != instance.password or (stored[1] and not instance.is_active))


@receiver(post_save, sender=User, dispatch_uid="socket_access.user_saved")
def _user_saved(sender, instance: User, created: bool, **kwargs) -> None:
    if not created and getattr(instance, "ends_socket_access", False):
        revoke(user_group(instance.pk))


@receiver(post_delete, sender=User, dispatch_uid="socket_access.user_deleted")
def _user_deleted(sender, instance: User, **kwargs) -> None:
    revoke(user_group(instance.pk))


@receiver(user_logged_out, dispatch_uid="socket_access.logged_out")
def _logged_out(sender, request, user, **kwargs) -> None:
    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        revoke(session_group(session_digest(session.session_key)))


async def still_valid(actor: Actor, session_key: str | None) -> bool:
    """Whether the socket's access still holds as it was when it connected: the same key, not
    revoked and with the same scope; or the same person, active, with the same role, and (for a
    socket opened with a session cookie) that session still signed in as them."""
    if session_key is not None:
        engine = import_module(settings.SESSION_ENGINE)
        user = await get_user({"session": engine.SessionStore(session_key)})  # Channels' own check
        if getattr(user, "pk", None) != actor.user_id:
            return False
    return await database_sync_to_async(_unchanged)(actor)


def _unchanged(actor: Actor) -> bool:
    if actor.api_key is not None:
        return ApiKey.objects.filter(pk=actor.api_key.pk, organization_id=actor.organization_id, scope=actor.scope,
                                     revoked_at__isnull=True).exists()
    return Membership.objects.filter(user_id=actor.user_id, organization_id=actor.organization_id, role=actor.role,
                                     user__is_active=True).exists()


class AccessBoundConsumer:
    """Mixin for a Channels consumer: `bind_access(actor, ...)` once accepted, `unbind_access()` on
    disconnect, and `access_ended()` (the subclass closes its way) when the access ends."""

    _access_groups: tuple[str, ...] = ()
    _access_watch: asyncio.Task | None = None

    async def bind_access(self, actor: Actor, session_key: str | None, session: str | None) -> None:
        """`session_key`: the cookie's session, re-checked; `session`: the digest of the session the
        socket came from (the cookie's, or the one that issued its ticket), for sign-out."""
        self._access_groups = tuple(socket_groups(actor, session))
        for group in self._access_groups:
            await self.channel_layer.group_add(group, self.channel_name)
        self._access_watch = asyncio.create_task(self._recheck(actor, session_key))

    async def unbind_access(self) -> None:
        if self._access_watch is not None:
            self._access_watch.cancel()
        for group in self._access_groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        self._access_groups = ()

    async def _recheck(self, actor: Actor, session_key: str | None) -> None:
        while True:
            await asyncio.sleep(recheck_seconds())
            try:
                valid = await still_valid(actor, session_key)
            except Exception:  # noqa: BLE001 — a database blip is not a revocation; try again later
                logger.warning("could not re-check a socket's access", exc_info=True)
                continue
            if not valid:
                await self.access_ended()
                return

    async def access_revoked(self, message) -> None:
        await self.access_ended()

    async def access_ended(self) -> None:
        raise NotImplementedError


async def socket_actor(scope, ticket) -> tuple[Actor, str | None, str | None]:
    """(actor, session key to re-check, session digest for sign-out) of a socket: the actor
    accounts.channels_auth put in the scope (API key header, or session cookie), else the one a
    short-lived ticket names (refused with a foreign Origin, like a cookie)."""
    actor = scope.get("actor", ANONYMOUS)
    if actor.organization_id is not None:
        if actor.api_key is not None:
            return actor, None, None
        key = scope["session"].session_key
        return actor, key, session_digest(key)
    if isinstance(ticket, str) and ticket and scope.get("origin_status") != "foreign":
        actor = await database_sync_to_async(actor_for_ticket)(ticket)
        return actor, None, ticket_session(ticket) if actor.api_key is None else None
    return actor, None, None
