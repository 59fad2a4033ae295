"""Relay connections with Shopify's opaque cursors, first/after and last/before, and its limits."""

from __future__ import annotations

import base64
import bisect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLError

MAX_PAGE_SIZE = 250
# SHOPIFY.md and Shopify's API limits page: "Shopify limits pagination of arrays of objects to
# 25,000 objects". The Storefront changelog (June 2025) documents the signal, an error "when
# paginating past the 25,000th item"; how the Admin API signals it is not documented, so the
# dev store answers the same way there (message and code are this store's own).
MAX_PAGINATED_OBJECTS = 25_000


@dataclass(frozen=True, slots=True)
class PageArgs:
    first: int | None = None
    after: str | None = None
    last: int | None = None
    before: str | None = None
    reverse: bool = False

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any]) -> PageArgs:
        return cls(
            first=kwargs.get("first"),
            after=kwargs.get("after"),
            last=kwargs.get("last"),
            before=kwargs.get("before"),
            reverse=bool(kwargs.get("reverse", False)),
        )


def encode_cursor(key: int) -> str:
    return base64.b64encode(json.dumps({"last_id": key}).encode()).decode()


def decode_cursor(cursor: str) -> int:
    try:
        return int(json.loads(base64.b64decode(cursor, validate=True))["last_id"])
    except (ValueError, KeyError, TypeError) as error:
        raise GraphQLError(f"Invalid cursor for current pagination sort: {cursor}") from error


def check_page_size(args: PageArgs) -> None:
    """Shopify refuses a connection without first/last, or with a page above 250."""
    if args.first is None and args.last is None:
        raise GraphQLError("you must provide one of first or last")
    for name, value in (("first", args.first), ("last", args.last)):
        if value is not None and value > MAX_PAGE_SIZE:
            raise GraphQLError(
                f"{name} cannot exceed {MAX_PAGE_SIZE}. To query larger amounts of data with "
                "fewer limits, bulk operations should be used instead."
            )
        if value is not None and value < 0:
            raise GraphQLError(f"{name} must be greater than or equal to 0")


def _check_depth(last_position: int) -> None:
    """Refuse a page that reaches past the 25,000th object of the (sorted) array."""
    if last_position > MAX_PAGINATED_OBJECTS:
        raise GraphQLError(
            f"Pagination is limited to {MAX_PAGINATED_OBJECTS:,} objects. Use a search query to "
            "narrow the results, or bulk operations to read them all.",
            extensions={"code": "PAGINATION_LIMIT_EXCEEDED"},
        )


def _window(keys: Sequence[int], args: PageArgs, is_sorted: bool) -> tuple[int, int]:
    """The [lo, hi) slice of keys (in natural order) that lies between the cursors."""

    def right_of(key: int) -> int:
        return bisect.bisect_right(keys, key) if is_sorted else _linear(keys, key) + 1

    def left_of(key: int) -> int:
        return bisect.bisect_left(keys, key) if is_sorted else _linear(keys, key)

    lo, hi = 0, len(keys)
    after = None if args.after is None else decode_cursor(args.after)
    before = None if args.before is None else decode_cursor(args.before)
    if args.reverse:
        after, before = before, after
    if after is not None:
        lo = max(lo, right_of(after))
    if before is not None:
        hi = min(hi, left_of(before))
    return lo, max(lo, hi)


def _linear(keys: Sequence[int], key: int) -> int:
    try:
        return list(keys).index(key)
    except ValueError as error:
        raise GraphQLError("Invalid cursor for current pagination sort.") from error


def connection(
    keys: Sequence[int],
    lookup: Callable[[int], object],
    args: PageArgs,
    *,
    is_sorted: bool = True,
    unlimited: bool = False,
) -> dict[str, Any]:
    """A connection value (edges, nodes, pageInfo) over `keys`; `unlimited` is for bulk queries."""
    if not unlimited:
        check_page_size(args)
    lo, hi = _window(keys, args, is_sorted)
    count = hi - lo
    start, stop = 0, count
    if not unlimited and args.first is not None:
        stop = min(count, args.first)
    if not unlimited and args.last is not None:
        start = max(start, stop - args.last)
    display = [keys[hi - 1 - i] if args.reverse else keys[lo + i] for i in range(start, stop)]
    if not unlimited and stop > start:
        _check_depth((len(keys) - hi if args.reverse else lo) + stop)
    edges = [{"cursor": encode_cursor(key), "node": lookup(key)} for key in display]
    before_window = (len(keys) - hi) if args.reverse else lo
    after_window = lo if args.reverse else (len(keys) - hi)
    page_info = {
        "hasNextPage": stop < count or (args.last is not None and after_window > 0),
        "hasPreviousPage": start > 0 or (args.first is not None and before_window > 0),
        "startCursor": edges[0]["cursor"] if edges else None,
        "endCursor": edges[-1]["cursor"] if edges else None,
    }
    return {"edges": edges, "nodes": [edge["node"] for edge in edges], "pageInfo": page_info}
