"""metafieldsSet / metafieldsDelete / metafieldDefinitionCreate over the store's state."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from plugin.devstore.gid import InvalidGidError, format_gid, parse_gid
from plugin.devstore.metafield_types import is_supported_type, max_characters, value_error
from plugin.devstore.models import Customer, Metafield, MetafieldDefinition, Order, Product
from plugin.devstore.resolvers import compare_digest
from plugin.devstore.state import DevStoreState

MAX_METAFIELDS_PER_SET = 25
_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
OWNER_TYPES: dict[type, str] = {Customer: "CUSTOMER", Product: "PRODUCT", Order: "ORDER"}
OWNER_TYPE_NAMES = {"CUSTOMER": "Customer", "PRODUCT": "Product", "ORDER": "Order"}
SHOPIFY_NAMESPACE_PREFIX = "shopify--"
# Assumed, not confirmed: the code is Shopify's for metafields an app may not write
# (MetafieldsSetUserErrorCode APP_NOT_AUTHORIZED); the message is a plausible wording.
RESERVED_NAMESPACE_MESSAGE = (
    "Access to this namespace and key on Metafields for this resource type is not allowed."
)

UserErrorDict = dict[str, Any]


@dataclass(frozen=True, slots=True)
class PlannedWrite:
    owner: Customer | Product | Order
    namespace: str
    key: str
    value: str
    type: str


def _error(index: int, field: str, message: str, code: str) -> UserErrorDict:
    return {
        "field": ["metafields", str(index), field],
        "message": message,
        "code": code,
        "elementIndex": index,
    }


def _name_error(index: int, field: str, value: str, low: int, high: int) -> UserErrorDict | None:
    label = field.capitalize()
    if len(value) < low:
        return _error(
            index, field, f"{label} is too short (minimum is {low} characters)", "TOO_SHORT"
        )
    if len(value) > high:
        return _error(
            index, field, f"{label} is too long (maximum is {high} characters)", "TOO_LONG"
        )
    if not _NAME.match(value):
        return _error(index, field, f"{label} contains one or more invalid characters.", "INVALID")
    return None


def _owner(state: DevStoreState, owner_id: str) -> Customer | Product | Order | None:
    try:
        type_name, legacy_id = parse_gid(owner_id)
    except InvalidGidError:
        return None
    found = state.find(type_name, legacy_id)
    return found if isinstance(found, Customer | Product | Order) else None


def _plan_one(
    state: DevStoreState,
    index: int,
    item: dict[str, Any],
    app_namespace: str,
    shopify_namespaces_writable: bool,
) -> PlannedWrite | UserErrorDict:
    owner = _owner(state, item["ownerId"])
    if owner is None:
        return _error(index, "ownerId", "Owner does not exist.", "INVALID")
    namespace = item.get("namespace") or app_namespace
    key = item["key"]
    name_error = _name_error(index, "namespace", namespace, 3, 255) or _name_error(
        index, "key", key, 2, 64
    )
    if name_error:
        return name_error
    if namespace.startswith(SHOPIFY_NAMESPACE_PREFIX) and not shopify_namespaces_writable:
        return _error(index, "namespace", RESERVED_NAMESPACE_MESSAGE, "APP_NOT_AUTHORIZED")
    owner_type = OWNER_TYPES[type(owner)]
    definition = state.metafield_definitions.get((owner_type, namespace, key))
    type_name = item.get("type") or (definition.type if definition else None)
    if type_name is None:
        return _error(index, "type", "Type can't be blank.", "BLANK")
    if not is_supported_type(type_name):
        return _error(index, "type", f"Type name {type_name} is not a valid type.", "INVALID_TYPE")
    if definition is not None and definition.type != type_name:
        mismatch = f"Type '{type_name}' does not match the definition's type '{definition.type}'."
        return _error(index, "type", mismatch, "INVALID_TYPE")
    value = item["value"]
    if not value.strip():
        return _error(index, "value", "Value can't be blank.", "BLANK")
    limit = max_characters(type_name)
    if len(value) > limit:
        too_long = f"Value is too long (maximum is {limit} characters)"
        return _error(index, "value", too_long, "TOO_LONG")
    message = value_error(type_name, value, lambda t, i: state.find(t, i) is not None)
    if message:
        return _error(index, "value", message, "INVALID_VALUE")
    existing = (owner.metafields or {}).get((namespace, key))
    # Shopify: a compareDigest must match the value held; an explicit null asks that there be
    # none yet (an absent compareDigest asks for no guarantee).
    if (
        "compareDigest" in item
        and (None if existing is None else compare_digest(existing)) != item["compareDigest"]
    ):
        message = (
            "The resource has been updated since it was loaded. "
            "Try again with an updated `compareDigest` value."
        )
        return _error(index, "compareDigest", message, "STALE_OBJECT")
    return PlannedWrite(owner, namespace, key, value, type_name)


def set_metafields(
    state: DevStoreState,
    items: list[dict[str, Any]],
    app_namespace: str,
    *,
    shopify_namespaces_writable: bool,
) -> tuple[list[Metafield] | None, list[UserErrorDict]]:
    """Validate every input first, then write all or nothing (metafieldsSet is atomic)."""
    if len(items) > MAX_METAFIELDS_PER_SET:
        message = f"Exceeded the maximum metafields input limit of {MAX_METAFIELDS_PER_SET}."
        return None, [
            {"field": ["metafields"], "message": message, "code": "LESS_THAN_OR_EQUAL_TO"}
        ]
    plans = [
        _plan_one(state, index, item, app_namespace, shopify_namespaces_writable)
        for index, item in enumerate(items)
    ]
    errors = [plan for plan in plans if isinstance(plan, dict)]
    if errors:
        return None, errors
    return [_write(state, plan) for plan in plans if isinstance(plan, PlannedWrite)], []


def _write(state: DevStoreState, plan: PlannedWrite) -> Metafield:
    now = state.now_iso()
    if plan.owner.metafields is None:
        plan.owner.metafields = {}
    existing = plan.owner.metafields.get((plan.namespace, plan.key))
    if existing is not None:
        existing.value, existing.type, existing.updated_at = plan.value, plan.type, now
        return existing
    owner_type = OWNER_TYPES[type(plan.owner)]
    field = Metafield(
        id=state.next_id(),
        owner_gid=format_gid(OWNER_TYPE_NAMES[owner_type], plan.owner.id),
        owner_type=owner_type,
        namespace=plan.namespace,
        key=plan.key,
        value=plan.value,
        type=plan.type,
        created_at=now,
        updated_at=now,
    )
    plan.owner.metafields[(plan.namespace, plan.key)] = field
    state.metafields_by_id[field.id] = field
    return field


def delete_metafields(
    state: DevStoreState, identifiers: list[dict[str, Any]]
) -> list[dict[str, str] | None]:
    """Each deleted identifier, or None where there was nothing to delete (as Shopify answers)."""
    deleted: list[dict[str, str] | None] = []
    for identifier in identifiers:
        owner = _owner(state, identifier["ownerId"])
        key = (identifier["namespace"], identifier["key"])
        field = (
            None if owner is None or owner.metafields is None else owner.metafields.pop(key, None)
        )
        if field is not None:
            state.metafields_by_id.pop(field.id, None)
        deleted.append(dict(identifier) if field is not None else None)
    return deleted


def create_definition(
    state: DevStoreState, definition: dict[str, Any], app_namespace: str
) -> tuple[MetafieldDefinition | None, list[UserErrorDict]]:
    namespace = definition.get("namespace") or app_namespace
    key, type_name, owner_type = definition["key"], definition["type"], definition["ownerType"]

    def error(field: str, message: str, code: str) -> list[UserErrorDict]:
        return [{"field": ["definition", field], "message": message, "code": code}]

    if not is_supported_type(type_name):
        return None, error("type", f"Type name {type_name} is not a valid type.", "INCLUSION")
    if not (2 <= len(key) <= 64) or not _NAME.match(key):
        return None, error("key", "Key is invalid.", "INVALID")
    if not (3 <= len(namespace) <= 255) or not _NAME.match(namespace):
        return None, error("namespace", "Namespace is invalid.", "INVALID")
    if (owner_type, namespace, key) in state.metafield_definitions:
        owner_name = owner_type.capitalize()
        message = f"Key is in use for {owner_name} metafields on the '{namespace}' namespace."
        return None, error("key", message, "TAKEN")
    created = MetafieldDefinition(
        id=state.next_id(),
        name=definition["name"],
        namespace=namespace,
        key=key,
        type=type_name,
        owner_type=owner_type,
        description=definition.get("description"),
    )
    state.metafield_definitions[(owner_type, namespace, key)] = created
    return created, []
