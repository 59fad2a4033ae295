"""Cursor pagination as a property: pages walk every key once, in order, either direction."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from plugin.devstore.pagination import PageArgs, connection


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
