"""The dev store's executable GraphQL schema: the SDL of sdl.py with resolvers attached."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from graphql import GraphQLInterfaceType, GraphQLObjectType, GraphQLScalarType, GraphQLSchema
from graphql import build_schema as build_from_sdl

from plugin.devstore.mutations import MUTATION_RESOLVERS
from plugin.devstore.resolvers import QUERY_RESOLVERS, resolve_node_type
from plugin.devstore.sdl import ADMIN_SDL


def _as_string(value: Any) -> str:
    """Shopify sends Decimal, Money and UnsignedInt64 as JSON strings."""
    if isinstance(value, Decimal):
        return format(value, "f")
    return str(value)


def build_devstore_schema() -> GraphQLSchema:
    schema = build_from_sdl(ADMIN_SDL)
    for scalar_name in ("Decimal", "Money", "UnsignedInt64"):
        scalar = schema.type_map[scalar_name]
        assert isinstance(scalar, GraphQLScalarType)
        # graphql-core 3.3 reads coerce_output_value; 3.2 reads serialize.
        scalar.serialize = _as_string  # type: ignore[method-assign]
        scalar.coerce_output_value = _as_string
    for interface_name in ("Node", "HasMetafields"):
        interface = schema.type_map[interface_name]
        assert isinstance(interface, GraphQLInterfaceType)
        interface.resolve_type = resolve_node_type
    for resolvers in (QUERY_RESOLVERS, MUTATION_RESOLVERS):
        for type_name, fields in resolvers.items():
            object_type = schema.type_map[type_name]
            assert isinstance(object_type, GraphQLObjectType)
            for field_name, resolver in fields.items():
                object_type.fields[field_name].resolve = resolver
    return schema
