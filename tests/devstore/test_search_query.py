"""The dev store's search syntax (`query:`): date values as Shopify wants them, quoted (single or
double quotes), and bare as it took them before."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from plugin.devstore.search_query import compile_query

STAMPS = ["2026-03-01T11:59:59Z", "2026-03-01T12:00:00Z", "2026-03-01T12:00:01Z"]


def matching(query: str) -> list[str]:
    predicate = compile_query(query)
    assert predicate is not None, f"no term of {query!r} understood"
    return [stamp for stamp in STAMPS if predicate(SimpleNamespace(updated_at=stamp))]


@pytest.mark.parametrize(
    "query",
    [
        "updated_at:>='2026-03-01T12:00:00Z'",
        'updated_at:>="2026-03-01T12:00:00Z"',
        "updated_at:>=2026-03-01T12:00:00Z",
        "updated_at:>='2026-03-01T13:00:00+01:00'",
    ],
    ids=["single-quotes", "double-quotes", "bare", "offset"],
)
def test_an_updated_at_bound_is_taken_to_the_second_quoted_or_not(query: str) -> None:
    assert matching(query) == STAMPS[1:]


def test_a_quoted_date_bound_starts_at_midnight_utc() -> None:
    assert matching("updated_at:<'2026-03-01'") == []
    assert matching("updated_at:>='2026-03-01'") == STAMPS


def test_a_quoted_bound_combines_with_other_terms() -> None:
    query = "updated_at:>='2026-03-01T12:00:00Z' updated_at:<\"2026-03-01T12:00:01Z\""
    assert matching(query) == STAMPS[1:2]


def test_a_bound_without_an_offset_is_utc_whatever_the_machines_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert matching("updated_at:>='2026-03-01T12:00:00'") == STAMPS[1:]
    finally:
        monkeypatch.undo()
        time.tzset()


def test_an_at_most_bound_takes_its_own_second() -> None:
    assert matching("updated_at:<='2026-03-01T12:00:00Z'") == STAMPS[:2]
    assert matching("updated_at:<'2026-03-01T12:00:00Z'") == STAMPS[:1]


def holds(query: str, record: object) -> bool:
    predicate = compile_query(query)
    assert predicate is not None, f"no term of {query!r} understood"
    return predicate(record)


def test_terms_on_text_numbers_and_tags() -> None:
    tea = SimpleNamespace(product_type="Tea", tags=["vip"], customer_id=None)
    # a text field matches whatever its case
    assert holds("product_type:tea", tea)
    # a term negated with "-" matches where the term does not
    assert not holds("-tag:vip", tea)
    assert holds("-tag:other", tea)
    # an order without a customer has no customer id above 0 (not a TypeError)
    assert not holds("customer_id:>0", tea)
    # and a term whose value cannot be read is left out, as Shopify ignores it
    assert matching("id:abc updated_at:>='2026-03-01T12:00:00Z'") == STAMPS[1:]
