"""What a GraphQL document may cost, estimated from the document alone and refused before execution.

Depth, alias and token limits do not bound work: `watchlist { series { watchlists { series ... } } }`
is shallow and short, yet each nested list multiplies the rows below it by its length. The estimate
here is an upper bound of the objects and fields a query can resolve:

    cost(field) = 1 + multiplier x cost(its selections)

where a list's multiplier is its page size: `pagination: {limit: n}` (at most
settings.GRAPHQL_MAX_PAGE_SIZE), the default page when no limit is given, and the largest page when
the limit is a variable (validation sees the document, not the variables, so the answer is the same
for every request with this text and may be cached). A paginated wrapper (`seriesList`) passes its
page size to its `results` list. Every alias counts, fragments count where they are spread, and
introspection (`__schema`, `__type`, `__typename`) counts 1: its size is the schema's, not the data's.

A document over settings.GRAPHQL_MAX_COST is refused with code `query_too_costly`, its cost and the
limit in `details`, before any resolver runs.
"""

from __future__ import annotations

from django.conf import settings
from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLList,
    GraphQLNonNull,
    InlineFragmentNode,
    IntValueNode,
    NullValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    get_named_type,
)
from strawberry_django.settings import strawberry_django_settings

PAGINATION_ARG = "pagination"  # strawberry-django's OffsetPaginationInput argument


def page_limits() -> tuple[int, int]:
    """(default page size, largest page size) of every paginated list (strawberry-django's settings)."""
    conf = strawberry_django_settings()
    return conf["PAGINATION_DEFAULT_LIMIT"], conf["PAGINATION_MAX_LIMIT"]


class CostEstimate:
    """The cost of one operation of a validated document; see the module docstring."""

    def __init__(self, context):
        self.context = context
        self.default_page, self.max_page = page_limits()
        self._fragments: dict[tuple[str, int | None], int] = {}
        self._active: set[str] = set()

    def operation(self, node: OperationDefinitionNode) -> int:
        root = self.context.schema.get_root_type(node.operation)
        return self.selections(node.selection_set, root, None) if root else 0

    def selections(self, selection_set: SelectionSetNode | None, parent, page: int | None) -> int:
        if selection_set is None or parent is None:
            return 0
        total = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                total += self.field(selection, parent, page)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                typ = self.context.schema.get_type(condition.name.value) if condition else parent
                total += self.selections(selection.selection_set, typ, page)
            elif isinstance(selection, FragmentSpreadNode):
                total += self.fragment(selection.name.value, page)
        return total

    def fragment(self, name: str, page: int | None) -> int:
        key = (name, page)
        if key in self._fragments:
            return self._fragments[key]
        definition = self.context.get_fragment(name)
        if definition is None or name in self._active:  # unknown or cyclic: other rules report it
            return 0
        self._active.add(name)
        try:
            typ = self.context.schema.get_type(definition.type_condition.name.value)
            cost = self.selections(definition.selection_set, typ, page)
        finally:
            self._active.discard(name)
        self._fragments[key] = cost
        return cost

    def field(self, node: FieldNode, parent, page: int | None) -> int:
        name = node.name.value
        fields = getattr(parent, "fields", None)
        if name.startswith("__") or not fields or name not in fields:
            return 1  # introspection; unknown fields are reported by FieldsOnCorrectTypeRule
        definition = fields[name]
        own_page = self.page_size(node) if PAGINATION_ARG in definition.args else None
        field_type = definition.type.of_type if isinstance(definition.type, GraphQLNonNull) else definition.type
        is_list = isinstance(field_type, GraphQLList)
        if is_list:
            multiplier = own_page if own_page is not None else page if page is not None else self.max_page
        else:
            multiplier = 1
        # A paginated wrapper (OffsetPaginated) hands its page size to the list inside it.
        inner_page = own_page if own_page is not None and not is_list else None
        return 1 + multiplier * self.selections(node.selection_set, get_named_type(field_type), inner_page)

    def page_size(self, node: FieldNode) -> int:
        """The page a `pagination` argument asks for, clamped as strawberry-django clamps it."""
        argument = next((a for a in node.arguments or () if a.name.value == PAGINATION_ARG), None)
        if argument is None or isinstance(argument.value, NullValueNode):
            return min(self.default_page, self.max_page)
        if not isinstance(argument.value, ObjectValueNode):
            return self.max_page  # a variable: the largest page it could ask for
        limit = next((f.value for f in argument.value.fields if f.name.value == "limit"), None)
        if limit is None or isinstance(limit, NullValueNode):
            return min(self.default_page, self.max_page)
        if not isinstance(limit, IntValueNode):
            return self.max_page
        value = int(limit.value)
        return value if 0 <= value <= self.max_page else self.max_page


class QueryCostLimit(ValidationRule):
    """Refuses an operation whose estimated cost is over settings.GRAPHQL_MAX_COST."""

    def enter_operation_definition(self, node: OperationDefinitionNode, *_args):
        cost = CostEstimate(self.context).operation(node)
        limit = settings.GRAPHQL_MAX_COST
        if cost > limit:
            default_page, max_page = page_limits()
            name = f" '{node.name.value}'" if node.name else ""
            self.report_error(GraphQLError(
                f"Query{name} may cost {cost:,}, over the limit GRAPHQL_MAX_COST = {limit:,}. Each list multiplies "
                f"what it selects by its page size (pagination: {{limit: n}}, default {default_page}, at most "
                f"{max_page}; a variable counts as {max_page}). Ask for smaller pages, fewer nested lists or "
                "fewer aliases.",
                node, extensions={"code": "query_too_costly",
                                  "details": {"cost": cost, "max_cost": limit, "setting": "GRAPHQL_MAX_COST",
                                              "default_page_size": default_page, "max_page_size": max_page}}))
        return self.SKIP
