"""Metafield value validation by type, as Shopify checks the string `value` of metafieldsSet."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal

from plugin.devstore.gid import InvalidGidError, parse_gid

# Shopify's integer range for number_integer (JavaScript's safe integers).
MAX_INTEGER = 9_007_199_254_740_991
# Shopify's list of data types: number_decimal is "a number with decimal places in the range of
# +/-9999999999999.999999999", so at most 9 digits after the point.
MAX_DECIMAL = Decimal("9999999999999.999999999")
MAX_DECIMAL_PLACES = 9
# Shopify's metafield limits: list types hold at most 128 items; values are limited in
# characters by type, "2m" for json and "65k" for the others here (read as 2,000,000 and 65,000:
# the lower reading, so the dev store is never the more lenient one). A list's items each have
# their single type's limit.
MAX_LIST_ITEMS = 128
MAX_JSON_CHARACTERS = 2_000_000
MAX_VALUE_CHARACTERS = 65_000
# ASCII digits only, matched whole: `\d` and `$` would let Arabic-Indic digits and a trailing
# newline through, which Shopify refuses.
_INTEGER = re.compile(r"[-+]?[0-9]+", re.ASCII)
_DECIMAL = re.compile(r"[-+]?[0-9]+(?:\.([0-9]+))?", re.ASCII)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)

ReferenceExists = Callable[[str, int], bool]
Check = Callable[[str, ReferenceExists], str | None]


def _integer(value: str, _: ReferenceExists) -> str | None:
    if not _INTEGER.fullmatch(value) or abs(int(value)) > MAX_INTEGER:
        return "Value must be an integer."
    return None


def _decimal(value: str, _: ReferenceExists) -> str | None:
    match = _DECIMAL.fullmatch(value)
    if not match:
        return "Value must be a decimal."
    if len(match.group(1) or "") > MAX_DECIMAL_PLACES or abs(Decimal(value)) > MAX_DECIMAL:
        return f"Value must be a decimal in the range of +/-{MAX_DECIMAL}."
    return None


def _date(value: str, _: ReferenceExists) -> str | None:
    try:
        if _DATE.fullmatch(value):
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


def _refuse_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


def _strict_json(value: str) -> object:
    """JSON as RFC 8259 has it: Python's parser also takes NaN and Infinity, Shopify does not."""
    return json.loads(value, parse_constant=_refuse_constant)


def _json(value: str, _: ReferenceExists) -> str | None:
    try:
        _strict_json(value)
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
            items = _strict_json(value)
        except ValueError:
            return "Value is invalid JSON."
        if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
            return "Value must be an array of references."
        if len(items) > MAX_LIST_ITEMS:
            return f"Value must have at most {MAX_LIST_ITEMS} items."
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


def max_characters(type_name: str) -> int:
    """The longest value of this type, in characters (for a list, its single type's limit
    times the items a list may hold)."""
    if type_name == "json":
        return MAX_JSON_CHARACTERS
    if type_name.startswith("list."):
        return MAX_VALUE_CHARACTERS * MAX_LIST_ITEMS
    return MAX_VALUE_CHARACTERS
