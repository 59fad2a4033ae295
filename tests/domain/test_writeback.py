"""The write-back's pure rules: settings, metafield values, and the desired-versus-pushed diff."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plugin.domain.writeback import (
    CustomerFigures,
    WritebackSettingsError,
    customer_change,
    desired_tags,
    metafield_values,
    product_references,
    same_value,
    writeback_settings,
)

NAMES = st.sampled_from(["champions", "lost", "top-20", "tier-vip", "win-back", "churn-risk"])
OURS = st.frozensets(NAMES.map(lambda n: "clv:" + n))
MERCHANT = st.frozensets(st.sampled_from(["newsletter", "wholesale", "clv", "VIP", "clv-fan"]))
VALUES = st.dictionaries(st.sampled_from(["segment", "p_alive"]), st.sampled_from(["a", "b"]))


@given(desired=OURS, pushed=OURS, merchant=MERCHANT, want=VALUES, held=VALUES)
def test_change_applied_to_the_store_gives_the_desired_tags_and_keeps_the_rest(
    desired: frozenset[str],
    pushed: frozenset[str],
    merchant: frozenset[str],
    want: dict[str, str],
    held: dict[str, str],
) -> None:
    # given a store holding the merchant's tags and what was pushed before
    store = set(merchant | pushed)
    change = customer_change(1, desired, pushed, want, held, {}, "lost")
    if change is None:
        # then nothing to do means nothing differs
        assert desired == pushed and want == held
        return
    # when the change is applied, as tagsRemove then tagsAdd (twice: a retried call)
    for _ in range(2):
        store -= set(change.remove)
        store |= set(change.add)
    values = held | dict(change.set_metafields)
    for key in change.delete_metafields:
        values.pop(key)
    # then the store holds the merchant's tags and exactly the desired ones, and the values
    assert store == set(merchant) | desired
    assert values == want
    # and only tags the app owns were ever named
    assert set(change.add) | set(change.remove) <= desired | pushed


def test_removal_reason_names_the_new_segment_and_additions_keep_theirs() -> None:
    change = customer_change(
        7,
        frozenset({"clv:lost"}),
        frozenset({"clv:champions"}),
        {},
        {},
        {"clv:lost": "R 1, F 1"},
        "lost",
    )
    assert change is not None
    assert change.reason("clv:lost") == "R 1, F 1"
    assert change.reason("clv:champions") == "no longer applies (segment lost)"


def test_metafield_values_publish_predictions_only_when_fitted() -> None:
    figures = CustomerFigures(120.456, 300.0, 0.8765, datetime(2027, 3, 4, 5, tzinfo=UTC), "loyal")
    fitted = metafield_values(figures, fitted=True)
    assert fitted == {
        "historical_value": "120.46",
        "predicted_value": "300.00",
        "p_alive": "0.88",
        "expected_next_order_date": "2027-03-04",
        "segment": "loyal",
    }
    assert metafield_values(figures, fitted=False) == {
        "historical_value": "120.46",
        "segment": "loyal",
    }


def test_metafield_values_leave_out_a_figure_the_store_would_refuse() -> None:
    # a model that diverged: an infinite, a NaN and a 14-digit figure (Shopify takes 13)
    figures = CustomerFigures(float("inf"), 1e13, float("nan"), None, "loyal")
    assert metafield_values(figures, fitted=True) == {"segment": "loyal"}
    figures = CustomerFigures(-1e13, float("-inf"), 0.5, None, "loyal")
    assert metafield_values(figures, fitted=True) == {"p_alive": "0.50", "segment": "loyal"}
    figures = CustomerFigures(-12.5, 9999999999999.99, 0.5, None, "loyal")
    assert metafield_values(figures, fitted=True) == {
        "historical_value": "-12.50",
        "predicted_value": "9999999999999.99",
        "p_alive": "0.50",
        "segment": "loyal",
    }


def test_desired_tags_carry_the_prefix() -> None:
    assert desired_tags("ltv-", "champions top-20") == {"ltv-champions", "ltv-top-20"}
    assert desired_tags("clv:", "") == frozenset()


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"tag_prefix": ""}, "tag_prefix"),
        ({"tag_prefix": "a,b"}, "tag_prefix"),
        ({"tag_prefix": " clv:"}, "tag_prefix"),
        ({"tag_prefix": "clv: "}, "tag_prefix"),
        ({"dry_run": "yes"}, "dry_run"),
        ({"bulk_threshold": 0}, "bulk_threshold"),
        ({"bulk_threshold": True}, "bulk_threshold"),
        ({"metafield_namespace": "x"}, "metafield_namespace"),
        ({"metafield_namespace": "clv data"}, "metafield_namespace"),
        ({"metafield_namespace": "clv.data"}, "metafield_namespace"),
        # the merchant's own (the app would write over their values) and Shopify's
        ({"metafield_namespace": "custom"}, "metafield_namespace 'custom' is the merchant's"),
        ({"metafield_namespace": "Custom"}, "metafield_namespace 'Custom' is the merchant's"),
        ({"metafield_namespace": "shopify--x"}, "metafield_namespace 'shopify--x' is the"),
        ({"tag_prefix": "n"}, "tag_prefix"),
        ({"tag_prefix": "clv2"}, "tag_prefix"),
        ({"tag_prefix": "x" * 40 + ":"}, "at most 40 characters"),
    ],
)
def test_bad_write_back_settings_are_refused_by_name(raw: dict[str, object], named: str) -> None:
    with pytest.raises(WritebackSettingsError, match=named):
        writeback_settings(raw)


def test_a_tag_prefix_of_40_characters_is_taken() -> None:
    assert writeback_settings({"tag_prefix": "x" * 39 + ":"}).tag_prefix == "x" * 39 + ":"


def test_write_back_settings_ignore_other_parts_keys() -> None:
    settings = writeback_settings({"scoring": {"top_share": 0.2}, "tag_prefix": "ltv-"})
    assert settings.tag_prefix == "ltv-" and settings.bulk_threshold == 1000


@pytest.mark.parametrize(
    ("held", "wanted", "same"),
    [
        ("12.50", "12.50", True),
        ("12.5", "12.50", True),  # a decimal given back in its shortest form
        ("12.49", "12.50", False),
        (
            '["gid://shopify/Product/1", "gid://shopify/Product/2"]',
            product_references([1, 2]),
            True,
        ),
        (
            '["gid://shopify/Product/2","gid://shopify/Product/1"]',
            product_references([1, 2]),
            False,
        ),
        ("champions", "champions", True),
        ("lost", "champions", False),
        ("2026-11-22", "2026-11-23", False),
        (None, "champions", False),
        ("[not json", "[]", False),
    ],
)
def test_held_values_are_compared_by_what_they_mean(
    held: str | None, wanted: str, same: bool
) -> None:
    assert same_value(held, wanted) is same


def test_a_value_shopify_gives_back_in_its_own_form_is_not_sent_again() -> None:
    # given values read back from the store in another form than the app sends them
    wanted = {"historical_value": "120.50", "recommended_products": product_references([3, 4])}
    held = {
        "historical_value": "120.5",
        "recommended_products": '["gid://shopify/Product/3", "gid://shopify/Product/4"]',
    }
    # then there is nothing to send
    assert customer_change(1, frozenset(), frozenset(), wanted, held, {}, None) is None
    assert product_references([3, 4]) == '["gid://shopify/Product/3","gid://shopify/Product/4"]'


def test_a_product_list_holds_at_most_ten_products() -> None:
    assert product_references(list(range(1, 13))) == product_references(list(range(1, 11)))
    assert product_references(list(range(1, 11))).count("gid://") == 10


def test_a_customer_value_not_the_apps_is_never_deleted() -> None:
    # given pushed values that hold, beside the app's segment, a merchant's own key (recorded as
    # the app's by an older release's reconcile)
    pushed = {"segment": "champions", "vip_note": "call first"}
    # when nothing is wanted any more, then only the app's key is deleted
    change = customer_change(1, frozenset(), frozenset(), {}, pushed, {}, None)
    assert change is not None and change.delete_metafields == ("segment",)
