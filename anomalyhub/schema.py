"""The GraphQL schema, composed from the apps' Query/Mutation/Subscription (as NetBox does).

Export after changing any GraphQL type (tests/graphql/test_schema_file.py fails on drift):

    .venv/bin/python manage.py export_schema anomalyhub.schema:schema --path schema.graphql

The cross-tenant walker (tests/graphql/walker.py) discovers every field composed here by itself.
"""

from __future__ import annotations

import logging

import strawberry
from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError
from graphql import GraphQLError, ValidationRule
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry_django.optimizer import DjangoOptimizerExtension

from accounts.graphql.base import SCALAR_MAP
from accounts.graphql.mutations import AccountsMutation
from accounts.graphql.queries import AccountsQuery
from alerts.graphql.mutations import AlertsMutation
from alerts.graphql.queries import AlertsQuery
from anomalyhub.lib.errors import ServiceError
from detection.graphql.mutations import DetectionMutation
from detection.graphql.queries import DetectionQuery
from detection.graphql.subscriptions import DetectionSubscription
from watchlists.graphql.mutations import WatchlistsMutation
from watchlists.graphql.queries import WatchlistsQuery

from .lib.graphql_cost import QueryCostLimit

logger = logging.getLogger(__name__)

MAX_DEPTH = settings.GRAPHQL_MAX_DEPTH
MAX_ALIASES = settings.GRAPHQL_MAX_ALIASES
MAX_TOKENS = settings.GRAPHQL_MAX_TOKENS
# Every list of objects is offset-paginated (settings.GRAPHQL_MAX_PAGE_SIZE per page), and what a
# document may cost, page sizes multiplied through its nesting, is bounded by QueryCostLimit.

# Messages of graphql-core / strawberry validation errors -> a stable code.
_VALIDATION_CODES = (
    ("exceeds maximum operation depth", "query_too_deep"),
    ("aliases found. Allowed", "too_many_aliases"),
    ("tokens.", "query_too_large"),
    ("Syntax Error", "graphql_parse_failed"),
)


class DepthLimiter(QueryDepthLimiter):
    """strawberry's depth limiter fails (max() of nothing) on an empty selection set such as `{ }`,
    which graphql-core 3.3 parses; found by tests/reliability/test_bad_input_graphql.py. Such a
    document is answered as the syntax error it is."""

    def __init__(self, max_depth: int) -> None:
        super().__init__(max_depth=max_depth)
        (limiter,) = self.validation_rules

        class Guarded(limiter):
            def __init__(self, context) -> None:
                try:
                    super().__init__(context)
                except ValueError:
                    ValidationRule.__init__(self, context)
                    context.report_error(GraphQLError(
                        "Syntax Error: an empty selection set; ask for at least one field inside { }."))

        self.validation_rules = [Guarded]


@strawberry.type
class Query(AccountsQuery, WatchlistsQuery, DetectionQuery, AlertsQuery):
    pass


@strawberry.type
class Mutation(AccountsMutation, WatchlistsMutation, DetectionMutation, AlertsMutation):
    pass


@strawberry.type
class Subscription(DetectionSubscription):
    pass


def error_code(error: GraphQLError) -> tuple[str, str, dict]:
    """(code, message, details) of an error: domain errors keep theirs; unexpected ones are masked."""
    original = error.original_error
    if isinstance(original, ServiceError):
        return original.code, original.message, original.details
    if isinstance(original, ObjectDoesNotExist):
        return "not_found", "Not found.", {}
    if isinstance(original, DjangoPermissionDenied):
        return "permission_denied", "Permission denied.", {}
    if isinstance(original, DjangoValidationError):
        return "invalid", "; ".join(original.messages), {}
    if isinstance(original, DataError):
        # GraphQL inputs skip the REST serializers' length checks; the column's limit is the last
        # line (the service's transaction has rolled back, so nothing was written).
        return "invalid", "A value does not fit its field (too long, or out of range); shorten it.", {}
    if original is not None and not isinstance(original, GraphQLError):
        return "server_error", "Internal error; it has been logged.", {}
    if error.extensions and error.extensions.get("code"):  # our own validation rules name theirs
        return error.extensions["code"], error.message, error.extensions.get("details") or {}
    for needle, code in _VALIDATION_CODES:
        if needle in error.message:
            return code, error.message, {}
    return "graphql_validation_failed", error.message, {}


class AnomalyHubSchema(strawberry.Schema):
    """Every error leaves with `extensions.code` (and `details` when there are any); unexpected
    exceptions are logged with their traceback here and reach the client as `server_error` only."""

    def process_errors(self, errors, execution_context=None) -> None:
        for error in errors:
            code, message, details = error_code(error)
            if code == "server_error":
                logger.error("GraphQL resolver failed", exc_info=error.original_error)
            elif code not in ("not_found", "permission_denied"):
                logger.info("GraphQL error %s: %s", code, message)
            error.message = message
            error.extensions = {**(error.extensions or {}), "code": code, **({"details": details} if details else {})}


# The limits' rule classes depend only on the limits: built once, they are the same objects in
# every request (DepthLimiter builds a class per instance), which is what lets validation be cached.
LIMIT_RULES = (*DepthLimiter(max_depth=MAX_DEPTH).validation_rules,
               *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules, QueryCostLimit)
# Distinct query texts remembered, parsed (ParserCache) and validated (ValidationCache): validation
# was half the CPU of a small query. Clients send a handful of fixed documents; the bound keeps
# made-up ones from growing memory.
DOCUMENT_CACHE_SIZE = 512


schema = AnomalyHubSchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    config=StrawberryConfig(scalar_map=SCALAR_MAP),
    extensions=[
        DjangoOptimizerExtension,
        lambda: AddValidationRules(list(LIMIT_RULES)),
        lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),  # a parse option: before ParserCache
        lambda: ParserCache(maxsize=DOCUMENT_CACHE_SIZE),
        lambda: ValidationCache(maxsize=DOCUMENT_CACHE_SIZE),
    ],
)
