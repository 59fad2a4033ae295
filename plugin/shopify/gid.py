"""Shopify's global ids (`gid://shopify/Customer/123`) and the numeric ids the ledger keeps."""

from __future__ import annotations


def gid(kind: str, number: int) -> str:
    """The global id of the `kind` object (Customer, Product ...) with that numeric id."""
    return f"gid://shopify/{kind}/{number}"


def gid_number(value: object) -> int:
    """The numeric id at the end of a global id (any query string after it ignored); a
    ValueError that quotes the value otherwise."""
    if not isinstance(value, str) or not value.startswith("gid://shopify/"):
        raise ValueError(f"expected a global id, got {value!r}")
    tail = value.rsplit("/", 1)[-1].split("?", 1)[0]
    if not tail.isdigit():
        raise ValueError(f"expected a numeric global id, got {value!r}")
    return int(tail)
