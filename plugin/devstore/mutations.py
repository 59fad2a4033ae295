"""Mutation resolvers: tags, metafields, definitions, staged uploads, bulk operations."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from graphql import GraphQLError

from plugin.devstore.metafields import create_definition, delete_metafields, set_metafields
from plugin.devstore.models import Customer, Order, Product
from plugin.devstore.resolvers import Resolver, ctx, ensure_input_size, parse_id_argument
from plugin.devstore.tags import MAX_TAGS_PER_RECORD, add_tags, normalise_tags, remove_tags

if TYPE_CHECKING:
    from plugin.devstore.context import Info


def _taggable(info: Info, gid: str) -> tuple[Customer | Product | Order | None, str]:
    type_name, legacy_id = parse_id_argument(gid)
    found = ctx(info).state.find(type_name, legacy_id)
    if isinstance(found, Customer | Product | Order):
        return found, type_name
    return None, type_name


def _missing(type_name: str) -> dict[str, Any]:
    return {
        "node": None,
        "userErrors": [{"field": ["id"], "message": f"{type_name} does not exist"}],
    }


def _touch(record: Customer | Product | Order, info: Info) -> None:
    ctx(info).state.record_changed(record)


def resolve_tags_add(_: Any, info: Info, id: str, tags: list[str]) -> dict[str, Any]:
    ensure_input_size("tags", tags)
    record, type_name = _taggable(info, id)
    if record is None:
        return _missing(type_name)
    cap = None if isinstance(record, Order) else MAX_TAGS_PER_RECORD
    before = len(record.tags)
    errors = add_tags(record.tags, normalise_tags(tags), cap=cap)
    if len(record.tags) != before:
        _touch(record, info)
    return {"node": None if errors else record, "userErrors": errors}


def resolve_tags_remove(
    _: Any,
    info: Info,
    id: str,
    tags: list[str],
) -> dict[str, Any]:
    ensure_input_size("tags", tags)
    record, type_name = _taggable(info, id)
    if record is None:
        return _missing(type_name)
    before = len(record.tags)
    remove_tags(record.tags, normalise_tags(tags))
    if len(record.tags) != before:
        _touch(record, info)
    return {"node": record, "userErrors": []}


def resolve_metafields_set(_: Any, info: Info, metafields: list[dict[str, Any]]) -> dict[str, Any]:
    ensure_input_size("metafields", metafields)
    context = ctx(info)
    written, errors = set_metafields(
        context.state,
        metafields,
        context.app_namespace,
        shopify_namespaces_writable=context.shopify_namespaces_writable,
    )
    return {"metafields": written, "userErrors": errors}


def resolve_metafields_delete(
    _: Any, info: Info, metafields: list[dict[str, Any]]
) -> dict[str, Any]:
    ensure_input_size("metafields", metafields)
    return {"deletedMetafields": delete_metafields(ctx(info).state, metafields), "userErrors": []}


def resolve_definition_create(_: Any, info: Info, definition: dict[str, Any]) -> dict[str, Any]:
    context = ctx(info)
    created, errors = create_definition(context.state, definition, context.app_namespace)
    return {"createdDefinition": created, "userErrors": errors}


def _staged_target(info: Info, item: dict[str, Any]) -> dict[str, Any]:
    """A target on this same server: POST multipart to `url` with `parameters`, or PUT to it."""
    context = ctx(info)
    key = f"tmp/{context.state.domain}/bulk/{uuid.uuid4()}/{item['filename']}"
    context.state.staged_uploads[key] = None
    upload_url = f"{context.base_url}/staged-uploads"
    parameters = [
        {"name": "key", "value": key},
        {"name": "Content-Type", "value": item["mimeType"]},
        {"name": "success_action_status", "value": "201"},
        {"name": "acl", "value": "private"},
    ]
    if item.get("httpMethod") == "PUT":
        return {
            "url": f"{upload_url}/{key}",
            "resourceUrl": f"{upload_url}/{key}",
            "parameters": parameters,
        }
    return {"url": upload_url, "resourceUrl": f"{upload_url}/{key}", "parameters": parameters}


def resolve_staged_uploads_create(
    _: Any,
    info: Info,
    input: list[dict[str, Any]],
) -> dict[str, Any]:
    ensure_input_size("input", input)
    return {"stagedTargets": [_staged_target(info, item) for item in input], "userErrors": []}


def _scheduler_result(started: tuple[Any, list[dict[str, object]]]) -> dict[str, Any]:
    operation, errors = started
    return {"bulkOperation": operation, "userErrors": errors}


def resolve_bulk_run_query(
    _: Any, info: Info, query: str, groupObjects: bool = False
) -> dict[str, Any]:
    context = ctx(info)
    if context.bulk_scheduler is None or context.in_bulk:
        raise GraphQLError("Bulk operations cannot be started from here.")
    return _scheduler_result(context.bulk_scheduler.start_query(context, query, groupObjects))


def resolve_bulk_run_mutation(
    _: Any, info: Info, mutation: str, stagedUploadPath: str, **__: Any
) -> dict[str, Any]:
    context = ctx(info)
    if context.bulk_scheduler is None or context.in_bulk:
        raise GraphQLError("Bulk operations cannot be started from here.")
    started = context.bulk_scheduler.start_mutation(context, mutation, stagedUploadPath)
    return _scheduler_result(started)


MUTATION_RESOLVERS: dict[str, dict[str, Resolver]] = {
    "Mutation": {
        "tagsAdd": resolve_tags_add,
        "tagsRemove": resolve_tags_remove,
        "metafieldsSet": resolve_metafields_set,
        "metafieldsDelete": resolve_metafields_delete,
        "metafieldDefinitionCreate": resolve_definition_create,
        "stagedUploadsCreate": resolve_staged_uploads_create,
        "bulkOperationRunQuery": resolve_bulk_run_query,
        "bulkOperationRunMutation": resolve_bulk_run_mutation,
    }
}
