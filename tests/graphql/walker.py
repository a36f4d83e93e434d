"""Walks every GraphQL query and mutation field as a member of another organization.

Fields are discovered from the schema, not listed, so a new field is walked the moment it exists.
Arguments are filled from their names and types: `id` is an object of the model the field returns
(or names, for mutations returning an ID), `<model>Id`/`<model>Ids` are objects of that model,
all created in org A by tests.factories.TENANT_FACTORIES. A field the walker cannot fill is
reported, as the REST walker reports a route without a factory.

Hidden means: a single object is null or a not_found/permission_denied error; a list does not
contain org A's object; a mutation aimed at org A's objects fails (error or typed InputError);
and afterwards no org A row was added, removed or changed."""

from __future__ import annotations

import json

from django.forms.models import model_to_dict
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLUnionType,
)
from strawberry_django.utils.typing import get_django_definition

from accounts.models import Organization
from anomalyhub.schema import schema
from tests.factories import TENANT_FACTORIES, load_app_factories

EXEMPT = {
    "me": "describes the caller only; covered by test_me_describes_the_caller",
    "createOrganization": "creates a new organization of the caller; touches no existing one",
}
ALIASES = {"member": "membership", "apikey": "apikey", "model": "modelversion", "run": "trainingrun",
           "webhook": "webhookendpoint", "delivery": "notification"}
HIDDEN_CODES = {"not_found", "permission_denied"}
SCALAR_VALUES = {"metrics": "close > 1", "label": "confirmed", "role": "viewer", "scope": "read", "name": "walker",
                 "email": "walker@example.com", "symbol": "WALK", "token": "walker-token", "kind": "robust_zscore",
                 "start": "2024-01-01T00:00:00+00:00", "end": "2024-01-02T00:00:00+00:00"}
TYPE_VALUES = {"String": "x", "Int": 1, "BigInt": 1000, "Float": 0.5, "Boolean": True,
               "DateTime": "2024-01-01T00:00:00+00:00", "JSON": [{"ts": "2024-01-01T00:00:00Z", "value": 1}]}


def _unwrap(gtype):
    while isinstance(gtype, (GraphQLNonNull, GraphQLList)):
        gtype = gtype.of_type
    return gtype


def models_by_type_name() -> dict[str, type]:
    found = {}
    for name in schema._schema.type_map:
        definition = schema.get_type_by_name(name)
        origin = getattr(definition, "origin", None)
        django = get_django_definition(origin) if origin is not None else None
        if django is not None and not getattr(definition, "is_input", False):
            found[name] = django.model
    return found


def _models_by_token() -> dict[str, type]:
    load_app_factories()
    tokens = {m.__name__.lower(): m for m in TENANT_FACTORIES}
    tokens.update({alias: tokens[target] for alias, target in ALIASES.items() if target in tokens})
    return tokens


def _returned_model(field, by_type):
    """The model a field returns: itself, a page's results, or a union's model member."""
    gtype = _unwrap(field.type)
    if isinstance(gtype, GraphQLObjectType) and "results" in gtype.fields:
        gtype = _unwrap(gtype.fields["results"].type)
    if isinstance(gtype, GraphQLUnionType):
        gtype = next((t for t in gtype.types if t.name in by_type), gtype)
    return by_type.get(gtype.name)


def _model_named_in(field_name: str, tokens) -> type | None:
    name = field_name.lower()
    hits = sorted((t for t in tokens if t in name), key=len, reverse=True)
    return tokens[hits[0]] if hits else None


def _id_model(arg_name: str, tokens) -> type | None:
    lowered = arg_name.lower()
    for suffix in ("ids", "id"):
        if lowered.endswith(suffix) and lowered != suffix:
            return tokens.get(lowered[: -len(suffix)])
    return None


class Walk:
    def __init__(self, org):
        self.org = org
        self.victims: list = []

    def victim(self, model):
        obj = TENANT_FACTORIES[model](self.org)
        self.victims.append(obj)
        return obj

    def value(self, name: str, gtype, id_model, tokens, fill_optional: bool):
        """A literal for an argument or input field, or raise LookupError when unknown."""
        required = isinstance(gtype, GraphQLNonNull)
        inner = _unwrap(gtype)
        is_list = isinstance(gtype.of_type if required else gtype, GraphQLList)
        if name == "id" and inner.name == "ID":
            if id_model is None:
                raise LookupError("cannot tell which model `id` refers to")
            return self.victim(id_model).pk
        model = _id_model(name, tokens) if inner.name == "ID" else None
        if model is not None:
            pk = self.victim(model).pk
            return [pk] if is_list else pk
        if not required and not fill_optional:
            return None
        if isinstance(inner, GraphQLInputObjectType):
            return {k: v for k, f in inner.fields.items()
                    if (v := self.value(k, f.type, None, tokens, False)) is not None}
        if isinstance(inner, GraphQLEnumType):
            return next(iter(inner.values))
        if isinstance(inner, GraphQLScalarType) and (name in SCALAR_VALUES or inner.name in TYPE_VALUES):
            return SCALAR_VALUES.get(name, TYPE_VALUES.get(inner.name))
        if not required:
            return None
        raise LookupError(f"no value for required argument {name}: {inner}")


def _literal(value) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value)


def _selection(field) -> str:
    gtype = _unwrap(field.type)
    if isinstance(gtype, GraphQLUnionType):
        parts = [f"... on {t.name} {{ id }}" for t in gtype.types if "id" in t.fields]
        return "{ __typename " + " ".join(parts) + " }"
    if isinstance(gtype, GraphQLObjectType):
        if "results" in gtype.fields:
            return "{ totalCount results { id } }"
        return "{ __typename" + (" id" if "id" in gtype.fields else "") + " }"
    return ""


def _org_state(org) -> dict:
    state = {"organization": model_to_dict(Organization.objects.get(pk=org.pk))}
    for model in TENANT_FACTORIES:
        if model is not Organization:
            rows = model._default_manager.filter(organization_id=org.pk).order_by("pk")
            state[model.__name__] = [model_to_dict(r) for r in rows]
    return state


def _arg_value_for(field_name, arg_name, arg, field, walk, by_type, tokens):
    id_model = None
    if arg_name == "id":
        id_model = _returned_model(field, by_type) or _model_named_in(field_name, tokens)
    return walk.value(arg_name, arg.type, id_model, tokens, fill_optional=arg_name.endswith(("Id", "Ids")))


def root_fields():
    gql = schema._schema
    return [("query", n, f) for n, f in gql.query_type.fields.items()] + \
           [("mutation", n, f) for n, f in gql.mutation_type.fields.items()]


def walk_graphql_as_other_tenant(gql, org_a) -> list[str]:
    """Calls every query and mutation field as `gql` (a client of another org) against org A.

    Returns the problems found: empty means every field is scoped."""
    by_type, tokens = models_by_type_name(), _models_by_token()
    problems: list[str] = []
    for operation, name, field in root_fields():
        if name in EXEMPT:
            continue
        walk = Walk(org_a)
        try:
            args = {a: v for a, arg in field.args.items()
                    if (v := _arg_value_for(name, a, arg, field, walk, by_type, tokens)) is not None}
        except LookupError as exc:
            problems.append(f"{operation} {name}: {exc}; name the argument after its model or exempt the field")
            continue
        listed = _returned_model(field, by_type) if "results" in _selection(field) else None
        if listed is not None:
            walk.victim(listed)  # something of org A that the list must not show
        aimed = bool(walk.victims) and listed is None
        before = _org_state(org_a)
        arg_text = "(" + ", ".join(f"{k}: {_literal(v)}" for k, v in args.items()) + ")" if args else ""
        body = gql(f"{operation} {{ {name}{arg_text} {_selection(field)} }}")
        errors = body.get("errors") or []
        codes = {e.get("extensions", {}).get("code") for e in errors}
        if "server_error" in codes:
            problems.append(f"{operation} {name}: server_error {errors}")
        value = (body.get("data") or {}).get(name)
        victim_ids = {str(v.pk) for v in walk.victims}
        if isinstance(value, dict) and "results" in value:
            leaked = victim_ids & {str(r["id"]) for r in value["results"]}
            if leaked:
                problems.append(f"{operation} {name} lists another organization's objects {sorted(leaked)}")
        elif aimed and value is not None and not (isinstance(value, dict) and value.get("__typename") == "InputError"):
            problems.append(f"{operation} {name} answered {value!r} for another organization's objects")
        elif aimed and value is None and errors and not codes & HIDDEN_CODES and "invalid" not in codes:
            problems.append(f"{operation} {name} failed with {codes}, not not_found")
        if _org_state(org_a) != before:
            problems.append(f"{operation} {name} changed another organization's data")
    return problems
