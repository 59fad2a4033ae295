"""Distinct buyers of a pair stay right where the pair key times the buyers passes int64."""

import numpy as np

from plugin.domain.recommendations_baskets import UNTYPED, Baskets
from plugin.domain.recommendations_together import count_pairs


def test_a_pair_of_the_last_products_counts_its_two_buyers_in_a_million_product_shop() -> None:
    products, customers = 3_200_000, 1_000_000
    last_two = [products - 2, products - 1]
    baskets = Baskets(
        product_ids=np.arange(products, dtype=np.int64),
        recommendable=np.ones(products, dtype=np.bool_),
        price=np.zeros(products),
        type_code=np.full(products, UNTYPED, dtype=np.int64),
        item=np.array(last_two * 2, dtype=np.int64),
        start=np.array([0, 2], dtype=np.int64),
        size=np.array([2, 2], dtype=np.int64),
        customer=np.array([0, customers - 1], dtype=np.int64),
        day=np.array([0.0, 1.0]),
        counted=np.array([True, True]),
        customer_ids=np.arange(customers, dtype=np.int64),
    )
    # the pair's key (P - 2) * P + (P - 1) times the 1,000,002 buyers is past 2^63
    assert (products - 2) * products * (customers + 2) > 2**63

    counts = count_pairs(baskets, floor=1)

    assert counts.left.tolist() == [products - 2]
    assert counts.right.tolist() == [products - 1]
    assert counts.together.tolist() == [2]
    assert counts.customers.tolist() == [2]
