"""Cursor pagination as a property: pages walk every key once, in order, either direction."""

from __future__ import annotations

import base64

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


def test_pagination_refuses_the_25001st_object_alone() -> None:
    keys = list(range(1, 25_010))
    # Given a page of one right after the 25,000th object, it is refused
    with pytest.raises(GraphQLError, match="25,000"):
        connection(keys, lambda key: key, PageArgs(first=1, after=encode_cursor(25_000)))
    # While the 25,000th alone is served
    page = connection(keys, lambda key: key, PageArgs(first=1, after=encode_cursor(24_999)))
    assert page["nodes"] == [25_000]


@pytest.mark.parametrize(
    "payload", [b"[1, 2]", b'"last_id"', b"7", b'{"id": 3}', b'{"last_id": "x"}', b"not json"]
)
def test_pagination_refuses_a_cursor_that_is_not_one_of_its_own(payload: bytes) -> None:
    cursor = base64.b64encode(payload).decode()
    with pytest.raises(GraphQLError, match="Invalid cursor"):
        connection([1, 2, 3], lambda key: key, PageArgs(first=2, after=cursor))


def test_pagination_between_cursors_that_cross_is_an_empty_page() -> None:
    # Given an after cursor that lies past the before cursor
    args = PageArgs(first=5, after=encode_cursor(8), before=encode_cursor(3))
    page = connection(list(range(1, 11)), lambda key: key, args)
    # Then nothing lies between them
    assert page["nodes"] == []
    assert page["pageInfo"]["startCursor"] is None
