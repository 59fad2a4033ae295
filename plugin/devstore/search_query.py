"""A subset of Shopify's search syntax for the `query:` argument (`updated_at:>='...'`, `tag:x`).

A value is bare or quoted (single or double quotes); Shopify wants a date value quoted, and this
takes a bare one too, as it did before. Shopify ignores terms it does not understand (and
reports them in extensions.search); so does this.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

Predicate = Callable[[Any], bool]

_TERM = re.compile(r"""(-?)(\w+):(<=|>=|<|>)?(?:'([^']*)'|"([^"]*)"|(\S+))""")
_DATE_FIELDS = {"created_at", "updated_at", "processed_at"}
_NUMERIC_FIELDS = {"id", "customer_id"}


def _as_datetime_text(value: str) -> str:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _compare(left: Any, operator: str, right: Any) -> bool:
    if operator == ">":
        return bool(left > right)
    if operator == ">=":
        return bool(left >= right)
    if operator == "<":
        return bool(left < right)
    if operator == "<=":
        return bool(left <= right)
    return bool(left == right)


def _term(field: str, operator: str, value: str) -> Predicate | None:
    if field in _DATE_FIELDS:
        bound = _as_datetime_text(value)
        return lambda record: _compare(getattr(record, field, ""), operator, bound)
    if field in _NUMERIC_FIELDS:
        number = int(value)
        return lambda record: _compare(getattr(record, field, None) or 0, operator, number)
    if field == "tag":
        return lambda record: value in getattr(record, "tags", ())
    if field in {"product_type", "title", "handle", "vendor", "state"}:
        lowered = value.lower()
        return lambda record: str(getattr(record, field, "")).lower() == lowered
    return None


def compile_query(query: str | None) -> Predicate | None:
    """A predicate for the terms understood (implicitly ANDed), or None when there are none."""
    if not query:
        return None
    predicates: list[Predicate] = []
    for match in _TERM.finditer(query):
        negate, field, operator, quoted1, quoted2, bare = match.groups()
        value = next(part for part in (quoted1, quoted2, bare) if part is not None)
        try:
            predicate = _term(field, operator or "", value)
        except ValueError:
            continue
        if predicate is not None:
            predicates.append(_negated(predicate) if negate else predicate)
    if not predicates:
        return None
    return lambda record: all(predicate(record) for predicate in predicates)


def _negated(predicate: Predicate) -> Predicate:
    return lambda record: not predicate(record)
