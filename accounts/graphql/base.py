"""Strawberry building blocks every app's GraphQL uses, so tenant scoping is never re-implemented.

The actor comes from accounts.tenancy (HTTP: actor_for_request; WebSocket: the scope's actor
set by accounts.channels_auth), and every model type scopes its rows with `for_actor`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NewType

import strawberry

from anomalyhub.lib.errors import ConflictError, InvalidError, NotFoundError

from ..querysets import TenantQuerySet
from ..tenancy import ANONYMOUS, Actor, actor_for_user

# Milliseconds and other 64-bit integers: GraphQL's Int stops at 2**31 - 1 (about 24.8 days in ms).
BigInt = NewType("BigInt", int)
SCALAR_MAP = {BigInt: strawberry.scalar(name="BigInt", description="A 64-bit integer (window sizes in ms, row counts).",
                                        serialize=int, parse_value=int)}


def actor_of(info) -> Actor:
    """The actor of the request or socket that runs this resolver."""
    context = info.context
    actor = context["actor"] if isinstance(context, dict) else getattr(context, "actor", None)
    return actor or ANONYMOUS


def actor_for_organization(info, organization_id) -> Actor:
    """The caller re-resolved for one organization (as tenancy.actor_for_org does for REST):
    an API key only ever acts for its own organization; a user for any they belong to."""
    base = actor_of(info)
    if base.api_key is not None or base.system:
        return base if str(base.organization_id) == str(organization_id) else ANONYMOUS
    return actor_for_user(base.user, organization_id)


def require_actor(info, action: str = "view") -> Actor:
    """The actor, who must act for an organization and be allowed `action` there."""
    actor = actor_of(info)
    actor.require(action)
    return actor


def pk_of(value, what: str = "object") -> int:
    """An ID argument as a primary key; anything else is simply not found (as in REST)."""
    text = str(value)
    if not text.isdigit() or len(text) > 18:
        raise NotFoundError(f"{what.capitalize()} {value} not found.")
    return int(text)


def given(input_obj) -> dict:
    """The fields a partial (update) input actually sets: UNSET fields are left out, null stays."""
    return {k: v for k, v in vars(input_obj).items() if v is not strawberry.UNSET}


def by_id(model, value):
    """A queryset of at most the object with this ID; the type's get_queryset scopes it."""
    text = str(value)
    manager = model._default_manager
    return manager.filter(pk=int(text)) if text.isdigit() and len(text) <= 18 else manager.none()


class TenantScoped:
    """Mixin for strawberry-django types over tenant models: every automatic queryset of the type,
    top-level or nested, holds only the actor's organization's rows that it may `scope_action`."""

    scope_action = "view"
    ordering: tuple[str, ...] = ("pk",)  # offset pages need a stable order

    @classmethod
    def get_queryset(cls, queryset, info, **kwargs):
        # Prefetches of relations may come from a plain manager: call the same for_actor on them.
        queryset = TenantQuerySet.for_actor(queryset, actor_of(info), cls.scope_action)
        return queryset if queryset.ordered else queryset.order_by(*cls.ordering)


@strawberry.type(description="One problem with one input field; position is a character offset in a rule's "
                             "metrics, metricIndex the metric it belongs to, row the ingest row.")
class FieldError:
    field: str
    message: str
    position: int | None = None
    metric_index: int | None = None
    row: int | None = None


@strawberry.type(description="The input was refused; nothing was changed. `code` is stable, `fields` says where.")
class InputError:
    code: str
    message: str
    fields: list[FieldError]

    @classmethod
    def from_exception(cls, exc: InvalidError | ConflictError) -> InputError:
        return cls(code=exc.code, message=exc.message, fields=list(_field_errors(exc.details)))


def _field_errors(details):
    if not isinstance(details, dict):
        return
    for field, problems in details.items():
        for problem in problems if isinstance(problems, list) else [problems]:
            if isinstance(problem, dict):
                yield FieldError(field=str(problem.get("column", field)),
                                 message=str(problem.get("message") or problem.get("reason") or problem),
                                 position=problem.get("position"), metric_index=problem.get("metric_index"),
                                 row=problem.get("row"))
            else:
                yield FieldError(field=str(field), message=str(problem))


def input_errors(call: Callable[[], Any]):
    """Runs a service call; invalid or conflicting input becomes an InputError result (a typed
    answer the client can show next to its form), everything else stays a GraphQL error."""
    try:
        return call()
    except (InvalidError, ConflictError) as exc:
        return InputError.from_exception(exc)
