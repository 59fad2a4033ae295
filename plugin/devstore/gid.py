"""Shopify global IDs (`gid://shopify/Customer/123`): formatting and parsing."""

from __future__ import annotations

import re

_GID = re.compile(r"^gid://shopify/([A-Za-z]+)/(\d+)$")


class InvalidGidError(ValueError):
    """A string that is not a Shopify global ID."""


def format_gid(type_name: str, legacy_id: int) -> str:
    return f"gid://shopify/{type_name}/{legacy_id}"


def parse_gid(value: str) -> tuple[str, int]:
    """Split a GID into its type name and numeric id; raise InvalidGidError otherwise."""
    match = _GID.match(value)
    if match is None:
        raise InvalidGidError(value)
    return match.group(1), int(match.group(2))
