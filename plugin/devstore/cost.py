"""Calculated query cost, following Shopify's published rules for the Admin API.

Scalars and enums cost 0, objects 1, a connection 2 plus `first` (or `last`) times the cost of one
item (the item object's 1 plus its own selections), a list of objects one object per item asked for
(`nodes(ids:)` per id, `refunds(first:)` per `first`, otherwise 1), an abstract selection the most
expensive of its type conditions, and every top-level mutation field 10. The requested cost is
computed from the query before it runs; the actual cost walks the result, so connections and lists
count the items they returned and null objects count 1 without children. Arguments are read as
graphql-core coerces them (a variable sent as 250.0 is the Int 250), and a negative size counts as
0: a cost below zero would credit the bucket."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLList,
    GraphQLNamedType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    get_named_type,
    get_nullable_type,
    is_leaf_type,
)
from graphql.execution.values import VariableValues, get_argument_values

MUTATION_COST = 10
CONNECTION_COST = 2
OBJECT_COST = 1


class _Walk:
    """Shared state of one cost walk: schema, fragments, coerced variables."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: VariableValues,
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def type_named(self, name: str | None, fallback: GraphQLNamedType) -> GraphQLNamedType:
        found = self.schema.get_type(name) if name else None
        return found or fallback

    def branches(
        self, parent: GraphQLNamedType, selection_set: SelectionSetNode
    ) -> tuple[list[FieldNode], list[tuple[GraphQLNamedType, SelectionSetNode]]]:
        """Fields selected on the parent itself, and fragments (with their type) to weigh."""
        fields: list[FieldNode] = []
        fragments: list[tuple[GraphQLNamedType, SelectionSetNode]] = []
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                fields.append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                target = self.type_named(condition.name.value if condition else None, parent)
                fragments.append((target, selection.selection_set))
            elif isinstance(selection, FragmentSpreadNode):
                fragment = self.fragments[selection.name.value]
                target = self.type_named(fragment.type_condition.name.value, parent)
                fragments.append((target, fragment.selection_set))
        return fields, fragments


def _is_connection(named: GraphQLNamedType) -> bool:
    return named.name.endswith("Connection")


def _arguments(walk: _Walk, parent: GraphQLNamedType, node: FieldNode) -> dict[str, Any]:
    """The field's arguments as execution sees them: literals and variables coerced, defaults in."""
    field = parent.fields[node.name.value]  # type: ignore[attr-defined]
    return get_argument_values(field, node, walk.variables)


def _page_size(walk: _Walk, parent: GraphQLNamedType, node: FieldNode) -> int:
    arguments = _arguments(walk, parent, node)
    size = arguments.get("first") or arguments.get("last") or 0
    return max(size, 0)


def _list_size(walk: _Walk, parent: GraphQLNamedType, node: FieldNode) -> int:
    arguments = _arguments(walk, parent, node)
    if isinstance(arguments.get("ids"), list):
        return len(arguments["ids"])
    size = arguments.get("first") or arguments.get("last")
    return 1 if size is None else max(size, 0)


# --- requested cost ---------------------------------------------------------------------------


def _requested_selection(walk: _Walk, parent: GraphQLNamedType, selection: SelectionSetNode) -> int:
    fields, fragments = walk.branches(parent, selection)
    own = sum(_requested_field(walk, parent, node) for node in fields)
    same_type = [_requested_selection(walk, t, s) for t, s in fragments if t is parent]
    other_types = [_requested_selection(walk, t, s) for t, s in fragments if t is not parent]
    return own + sum(same_type) + max(other_types, default=0)


def _item_selections(
    walk: _Walk, connection_type: GraphQLNamedType, selection: SelectionSetNode
) -> list[tuple[GraphQLNamedType, SelectionSetNode]]:
    """The selections made on each item of a connection, through `edges { node }` or `nodes`."""
    found: list[tuple[GraphQLNamedType, SelectionSetNode]] = []
    fields, _ = walk.branches(connection_type, selection)
    for node in fields:
        name = node.name.value
        field_type = connection_type.fields[name].type  # type: ignore[attr-defined]
        named = get_named_type(field_type)
        if name == "nodes" and node.selection_set:
            found.append((named, node.selection_set))
        if name == "edges" and node.selection_set:
            edge_fields, _ = walk.branches(named, node.selection_set)
            item_type = get_named_type(named.fields["node"].type)
            found.extend(
                (item_type, edge.selection_set)
                for edge in edge_fields
                if edge.name.value == "node" and edge.selection_set
            )
    return found


def _costed_type(parent: GraphQLNamedType, node: FieldNode) -> GraphQLNamedType | None:
    """The named type a field returns, or None when it costs nothing (scalars, introspection)."""
    if node.name.value.startswith("__"):
        return None
    named = get_named_type(parent.fields[node.name.value].type)  # type: ignore[attr-defined]
    return None if is_leaf_type(named) else named


def _requested_field(walk: _Walk, parent: GraphQLNamedType, node: FieldNode) -> int:
    named = _costed_type(parent, node)
    if named is None or node.selection_set is None:
        return 0
    if _is_connection(named):
        items = _item_selections(walk, named, node.selection_set)
        per_item = OBJECT_COST + max(
            (_requested_selection(walk, t, s) for t, s in items), default=0
        )
        return CONNECTION_COST + _page_size(walk, parent, node) * per_item
    children = _requested_selection(walk, named, node.selection_set)
    field_type = parent.fields[node.name.value].type  # type: ignore[attr-defined]
    if isinstance(get_nullable_type(field_type), GraphQLList):
        return _list_size(walk, parent, node) * (OBJECT_COST + children)
    return OBJECT_COST + children


def requested_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: VariableValues,
) -> int:
    if operation.operation == OperationType.MUTATION:
        return MUTATION_COST * _top_level_count(operation)
    walk = _Walk(schema, fragments, variables)
    root = schema.query_type
    assert root is not None
    return _requested_selection(walk, root, operation.selection_set)


def _top_level_count(operation: OperationDefinitionNode) -> int:
    return sum(
        1
        for selection in operation.selection_set.selections
        if not (isinstance(selection, FieldNode) and selection.name.value.startswith("__"))
    )


# --- actual cost ------------------------------------------------------------------------------


def _actual_selection(
    walk: _Walk, parent: GraphQLNamedType, selection: SelectionSetNode, data: Any, seen: set[str]
) -> int:
    if not isinstance(data, Mapping):
        return 0
    fields, fragments = walk.branches(parent, selection)
    total = 0
    for node in fields:
        key = node.alias.value if node.alias else node.name.value
        if key in data and key not in seen:
            seen.add(key)
            total += _actual_field(walk, parent, node, data[key])
    for fragment_type, fragment_selection in fragments:
        # A fragment that did not apply left no keys in the result, so it adds nothing here.
        total += _actual_selection(walk, fragment_type, fragment_selection, data, seen)
    return total


def _actual_item(
    walk: _Walk, items: list[tuple[GraphQLNamedType, SelectionSetNode]], item: Any
) -> int:
    costs = (_actual_selection(walk, t, s, item, set()) for t, s in items)
    return OBJECT_COST + max(costs, default=0)


def _connection_items(value: Any) -> list[Any]:
    if not isinstance(value, Mapping):
        return []
    if isinstance(value.get("nodes"), list):
        return list(value["nodes"])
    edges = value.get("edges")
    return [edge.get("node") for edge in edges if isinstance(edge, Mapping)] if edges else []


def _actual_field(walk: _Walk, parent: GraphQLNamedType, node: FieldNode, value: Any) -> int:
    named = _costed_type(parent, node)
    if named is None or node.selection_set is None:
        return 0
    if _is_connection(named):
        items = _item_selections(walk, named, node.selection_set)
        returned = _connection_items(value)
        return CONNECTION_COST + sum(_actual_item(walk, items, item) for item in returned)
    if isinstance(value, list):
        return sum(
            OBJECT_COST + _actual_selection(walk, named, node.selection_set, item, set())
            for item in value
        )
    return OBJECT_COST + _actual_selection(walk, named, node.selection_set, value, set())


def actual_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: VariableValues,
    data: Any,
) -> int:
    if operation.operation == OperationType.MUTATION:
        return MUTATION_COST * _top_level_count(operation)
    walk = _Walk(schema, fragments, variables)
    root = schema.query_type
    assert root is not None
    return _actual_selection(walk, root, operation.selection_set, data, set())
