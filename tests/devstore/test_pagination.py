"""Cursor pagination as a property: pages walk every key once, in order, either direction."""

from __future__ import annotations

import pytest
from graphql import GraphQLError
from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.devstore.pagination import PageArgs, connection, encode_cursor


def walk(keys: list[int], size: int, reverse: bool, backwards: bool) -> list[int]:
    """Follow endCursor (or startCursor with last/before) until the pages run out."""
    seen: list[int] = []
    cursor: str | None = None
    for _ in range(len(keys) + 2):
        if backwards:
            args = PageArgs(last=size, before=cursor, reverse=reverse)
        else:
            args = PageArgs(first=size, after=cursor, reverse=reverse)
        page = connection(keys, lambda key: key, args)
        nodes = page["nodes"]
        seen = nodes + seen if backwards else seen + nodes
        info = page["pageInfo"]
        more = info["hasPreviousPage"] if backwards else info["hasNextPage"]
        if not more:
            return seen
        cursor = info["startCursor"] if backwards else info["endCursor"]
    raise AssertionError("pagination did not terminate")


@settings(max_examples=150, deadline=None)
@given(
    keys=st.lists(st.integers(1, 10_000), unique=True, max_size=60).map(sorted),
    size=st.integers(1, 25),
    reverse=st.booleans(),
    backwards=st.booleans(),
)
def test_pagination_pages_cover_every_key_once_in_order(
    keys: list[int], size: int, reverse: bool, backwards: bool
) -> None:
    expected = list(reversed(keys)) if reverse else keys
    assert walk(keys, size, reverse, backwards) == expected


def test_pagination_stops_with_an_error_past_the_25000th_object() -> None:
    # Given 25,300 keys paged 250 at a time
    keys = list(range(1, 25_301))
    last_allowed = connection(
        keys, lambda key: key, PageArgs(first=250, after=encode_cursor(24_750))
    )
    # Then the page ending at the 25,000th object is served, and says more exist
    assert last_allowed["nodes"][-1] == 25_000
    assert last_allowed["pageInfo"]["hasNextPage"] is True
    # When the next page is asked for, it is refused (Shopify: an error past the 25,000th item)
    with pytest.raises(GraphQLError, match="25,000"):
        connection(keys, lambda key: key, PageArgs(first=250, after=encode_cursor(25_000)))
    # And from the other end (reverse), depth counts in the reversed order
    with pytest.raises(GraphQLError, match="25,000"):
        connection(
            keys, lambda key: key, PageArgs(first=250, after=encode_cursor(300), reverse=True)
        )
    # And bulk queries (unlimited) read past it
    everything = connection(keys, lambda key: key, PageArgs(), unlimited=True)
    assert len(everything["nodes"]) == 25_300
