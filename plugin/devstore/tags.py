"""Tag rules as Shopify applies them in tagsAdd / tagsRemove."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# Customers (SHOPIFY.md) and products (Shopify changelog, 2019-03-04: "Products can no longer
# have more than 250 tags", on plans up to Advanced) hold at most 250 tags; no cap on orders is
# documented, so the dev store sets none there.
MAX_TAGS_PER_RECORD = 250
MAX_TAG_LENGTH = 255

UserErrorDict = dict[str, Any]


def normalise_tags(raw: Iterable[str]) -> list[str]:
    """Shopify splits each item on commas (`"a, b"` is two tags), strips, drops blanks, de-dupes."""
    seen: dict[str, None] = {}
    for item in raw:
        for part in item.split(","):
            tag = part.strip()
            if tag:
                seen.setdefault(tag, None)
    return list(seen)


def tag_errors(tags: list[str]) -> list[UserErrorDict]:
    too_long = [tag for tag in tags if len(tag) > MAX_TAG_LENGTH]
    if too_long:
        return [
            {
                "field": ["tags"],
                "message": f"Tag is too long (maximum is {MAX_TAG_LENGTH} characters)",
            }
        ]
    return []


def add_tags(current: list[str], incoming: list[str], *, cap: int | None) -> list[UserErrorDict]:
    """Add in place; all or nothing, so a refused call leaves the record as it was."""
    errors = tag_errors(incoming)
    if errors:
        return errors
    known = set(current)
    new = [tag for tag in incoming if tag not in known]
    if cap is not None and len(current) + len(new) > cap:
        return [{"field": ["tags"], "message": f"Tags cannot be more than {cap}"}]
    current.extend(new)
    return []


def remove_tags(current: list[str], outgoing: list[str]) -> None:
    unwanted = set(outgoing)
    current[:] = [tag for tag in current if tag not in unwanted]
