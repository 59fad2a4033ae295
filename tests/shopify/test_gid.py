"""Global ids to and from the ledger's numeric ids."""

from __future__ import annotations

import pytest

from plugin.shopify.gid import gid, gid_number


def test_global_ids_round_trip() -> None:
    assert gid("Customer", 42) == "gid://shopify/Customer/42"
    assert gid_number(gid("Product", 7)) == 7
    assert gid_number("gid://shopify/LineItem/9?from=bulk") == 9


@pytest.mark.parametrize("bad", ["42", "gid://shopify/Customer/abc", None, "https://x/Customer/1"])
def test_a_value_that_is_no_global_id_is_quoted(bad: object) -> None:
    with pytest.raises(ValueError, match="global id"):
        gid_number(bad)
