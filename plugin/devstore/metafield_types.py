"""Metafield value validation by type, as Shopify checks the string `value` of metafieldsSet."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime

from plugin.devstore.gid import InvalidGidError, parse_gid

# Shopify's integer range for number_integer (JavaScript's safe integers).
MAX_INTEGER = 9_007_199_254_740_991
_INTEGER = re.compile(r"^[-+]?\d+$")
_DECIMAL = re.compile(r"^[-+]?\d+(\.\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

ReferenceExists = Callable[[str, int], bool]
Check = Callable[[str, ReferenceExists], str | None]


def _integer(value: str, _: ReferenceExists) -> str | None:
    if not _INTEGER.match(value) or abs(int(value)) > MAX_INTEGER:
        return "Value must be an integer."
    return None


def _decimal(value: str, _: ReferenceExists) -> str | None:
    if not _DECIMAL.match(value):
        return "Value must be a decimal."
    return None


def _date(value: str, _: ReferenceExists) -> str | None:
    try:
        if _DATE.match(value):
            date.fromisoformat(value)
            return None
    except ValueError:
        pass
    return "Value must be in YYYY-MM-DD format."


def _date_time(value: str, _: ReferenceExists) -> str | None:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return "Value must be in ISO 8601 date and time format."
    return None


def _single_line(value: str, _: ReferenceExists) -> str | None:
    if "\n" in value or "\r" in value:
        return "Value must be a single line text string."
    return None


def _multi_line(value: str, _: ReferenceExists) -> str | None:
    return None


def _boolean(value: str, _: ReferenceExists) -> str | None:
    return None if value in {"true", "false"} else "Value must be true or false."


def _json(value: str, _: ReferenceExists) -> str | None:
    try:
        json.loads(value)
    except ValueError:
        return "Value is invalid JSON."
    return None


def _reference(type_name: str) -> Check:
    def check(value: str, exists: ReferenceExists) -> str | None:
        return _reference_error(value, type_name, exists)

    return check


def _reference_error(value: str, type_name: str, exists: ReferenceExists) -> str | None:
    try:
        found_type, legacy_id = parse_gid(value)
    except InvalidGidError:
        return f"Value must be a valid {type_name} reference."
    if found_type != type_name or not exists(found_type, legacy_id):
        return f"Value references non-existent resource {value}."
    return None


def _list_of(type_name: str) -> Check:
    def check(value: str, exists: ReferenceExists) -> str | None:
        try:
            items = json.loads(value)
        except ValueError:
            return "Value is invalid JSON."
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            return "Value must be an array of references."
        errors = (_reference_error(item, type_name, exists) for item in items)
        return next((error for error in errors if error), None)

    return check


CHECKS: dict[str, Check] = {
    "number_integer": _integer,
    "number_decimal": _decimal,
    "date": _date,
    "date_time": _date_time,
    "single_line_text_field": _single_line,
    "multi_line_text_field": _multi_line,
    "boolean": _boolean,
    "json": _json,
    "product_reference": _reference("Product"),
    "customer_reference": _reference("Customer"),
    "variant_reference": _reference("ProductVariant"),
    "list.product_reference": _list_of("Product"),
    "list.variant_reference": _list_of("ProductVariant"),
}


def is_supported_type(type_name: str) -> bool:
    return type_name in CHECKS


def value_error(type_name: str, value: str, exists: ReferenceExists) -> str | None:
    """The message Shopify gives for an invalid value of this type, or None when it is valid."""
    return CHECKS[type_name](value, exists)
