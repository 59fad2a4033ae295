"""Counts in the command line's output agree with their nouns: "1 customer", "2 customers"."""

from __future__ import annotations

import pytest

from plugin.cli_push import _print_plan


def plan(customers: int, products: int) -> dict[str, object]:
    """A push plan as `jobs.plan.Plan.summary` gives it, with these counts."""
    return {
        "customers_with_tag_changes": customers,
        "customers_with_metafield_changes": customers,
        "tags_added": {"clv:tier-insider": customers},
        "tags_removed": {"clv:churn-risk": customers},
        "metafields_set": {"segment": customers},
        "metafields_deleted": {"p_alive": customers},
        "products_with_changes": products,
        "skipped_refused": 0,
        "sample": [],
    }


@pytest.mark.parametrize(
    ("count", "counted", "whose"),
    [(1, "1 customer", "1 customer's"), (2, "2 customers", "2 customers'")],
)
def test_push_dry_run_counts_agree_with_their_nouns(
    capsys: pytest.CaptureFixture[str], count: int, counted: str, whose: str
) -> None:
    # when a plan with these counts is printed
    _print_plan(plan(count, count))
    lines = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    # then each count reads with its noun in the number it needs
    assert lines[0].startswith(f"dry run: {whose} tags and {whose} metafields would change")
    assert f"add clv:tier-insider {counted}" in lines
    assert f"remove clv:churn-risk {counted}" in lines
    assert f"set metafield segment {counted}" in lines
    assert f"delete metafield p_alive {counted}" in lines
    product = "1 product's" if count == 1 else f"{count} products'"
    assert f"{product} recommendation metafields would change" in lines
