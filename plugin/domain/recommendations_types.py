"""What the recommendations take and give: order lines, the product table, settings, results.

Re-exported by `plugin.domain.recommendations`, the public surface; they live here so that the
co-purchase, sequence and per-customer modules share them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from plugin.domain.scoring_types import FloatArray, IntArray

NO_PRODUCT = -1  # pads a bundle's third slot and a customer's missing picks


@dataclass(frozen=True)
class OrderLines:
    """One row per counted order line, equal-length 1-d arrays, any row order.

    The caller has left out gift cards, custom items (no product id), test, cancelled and fully
    refunded orders, and refunded lines. `customer_id` is -1 for a guest order (it feeds the
    product statistics only); `day` is fractional days since the Unix epoch, UTC;
    `quantity` what is left of the line (a line with quantity <= 0 is ignored); `unit_price` in
    shop currency. Every row of one order carries that order's customer and day.
    """

    order_id: IntArray
    customer_id: IntArray
    product_id: IntArray
    day: FloatArray
    quantity: IntArray
    unit_price: FloatArray


@dataclass(frozen=True)
class ProductTable:
    """The products that may be recommended (the shop's current catalogue), one row each.

    `product_type`: strings (None or "" when the product has no type) or integer codes (negative
    when none), compared for equality only; `price`: current price in shop currency, NaN when
    unknown (then the last unit price paid for it stands in). Products missing from this table
    (deleted, archived) still count as evidence and as owned, but are never recommended.
    """

    product_id: IntArray
    product_type: NDArray[Any]
    price: FloatArray


@dataclass(frozen=True)
class RecommendationSettings:
    """Per-shop thresholds; the defaults are the product's. Counts are orders (baskets) unless
    named otherwise; prices in shop currency."""

    # Baskets with more distinct products than this are wholesale or test orders: skipped by
    # every statistic, though their products still count as owned by the customer.
    max_basket_products: int = 50
    # Frequently bought together: a pair needs this many baskets with both, from at least
    # fbt_min_customers distinct customers (a guest order counts as one), and lift at least
    # fbt_min_lift (1.0 is chance); at most fbt_per_product partners per product.
    fbt_min_support: int = 5
    fbt_min_customers: int = 3
    fbt_min_lift: float = 1.2
    fbt_per_product: int = 10
    # Bundles: pairs and triples in at least bundle_min_support baskets from at least
    # bundle_min_customers customers, bought together at least bundle_min_lift times as often
    # as chance; the merchant sees at most bundle_max of them.
    bundle_min_support: int = 10
    bundle_min_customers: int = 5
    bundle_min_lift: float = 2.0
    bundle_max: int = 200
    # Upsell: a pricier product of the same type costing at least upsell_min_price_ratio times
    # as much, bought later by at least upsell_min_support customers; at most
    # upsell_per_product. A customer with more than max_basket_products products of one type
    # takes no part (see `upsell_links`).
    upsell_min_support: int = 3
    upsell_min_price_ratio: float = 1.1
    upsell_per_product: int = 10
    # Per-customer next products: how many; the customer's last history_orders orders speak,
    # each older order weighing history_decay times the next; a sequence statistic (product a
    # in an order, b in the customer's next order) needs sequence_min_support such order pairs
    # and is shrunk towards the shop's base rate as if sequence_prior_orders more order pairs
    # had been seen at that rate; each product keeps its sequence_neighbors best followers.
    # A sequence or co-purchase count (next products, frequently bought together, bundles) must
    # be one that independent purchases reach with a chance of at most signal_max_chance (a
    # Chernoff bound): with thousands of products, most pairs that pass a mere support
    # threshold are noise.
    next_products: int = 5
    history_orders: int = 3
    history_decay: float = 0.5
    sequence_min_support: int = 3
    signal_max_chance: float = 1e-4
    sequence_prior_orders: float = 50.0
    sequence_neighbors: int = 20
    # An owned consumable comes back reorder_lead x its interval before it is due (its refills
    # come early as often as late); 0 keeps exactly the reorder-due flag's rule.
    reorder_lead: float = 0.3
    # Weight of the co-purchase gain (bought together with something the customer owns)
    # beside the sequence gain (bought next by those who bought what the customer owns).
    co_purchase_weight: float = 0.25
    # An owned product is offered again only if at least again_min_customers customers bought it
    # in a later order (else it is a one-off); a customer's own share of later orders with it is
    # shrunk towards the shop's as if again_prior_orders more orders had been seen at that share.
    again_min_customers: int = 3
    again_prior_orders: float = 5.0

    def __post_init__(self) -> None:
        problems = [text for broken, text in self._checks() if broken]
        if problems:
            raise ValueError("invalid recommendation settings: " + "; ".join(problems))

    def _checks(self) -> list[tuple[bool, str]]:
        at_least_one = (
            "max_basket_products",
            "fbt_min_support",
            "fbt_min_customers",
            "fbt_per_product",
            "bundle_min_support",
            "bundle_min_customers",
            "bundle_max",
            "upsell_min_support",
            "upsell_per_product",
            "next_products",
            "history_orders",
            "sequence_min_support",
            "sequence_neighbors",
            "again_min_customers",
        )
        checks = [(getattr(self, name) < 1, f"{name} must be >= 1") for name in at_least_one]
        checks += [
            (self.max_basket_products < 2, "max_basket_products must be >= 2"),
            # a product's list in the store holds at most this many (MAX_PRODUCT_REFERENCES)
            (self.fbt_per_product > 10, "fbt_per_product must be <= 10"),
            (self.upsell_per_product > 10, "upsell_per_product must be <= 10"),
            # and a customer's next products are one such list too
            (self.next_products > 10, "next_products must be <= 10"),
            (not self.fbt_min_lift >= 0, "fbt_min_lift must be >= 0"),
            (not self.bundle_min_lift >= 0, "bundle_min_lift must be >= 0"),
            (not self.upsell_min_price_ratio >= 1, "upsell_min_price_ratio must be >= 1"),
            (not 0 < self.history_decay <= 1, "history_decay must be in (0, 1]"),
            (not 0 < self.signal_max_chance <= 1, "signal_max_chance must be in (0, 1]"),
            (not self.sequence_prior_orders >= 0, "sequence_prior_orders must be >= 0"),
            (not 0 <= self.reorder_lead < 1, "reorder_lead must be in [0, 1)"),
            (not self.co_purchase_weight >= 0, "co_purchase_weight must be >= 0"),
            (not self.again_prior_orders > 0, "again_prior_orders must be > 0"),
        ]
        return checks


@dataclass(frozen=True)
class ProductLinks:
    """Recommended partners per product, one row per (product, partner), grouped by product id
    (ascending) and in rank order within it (rank 0 is the best).

    Frequently bought together: `support` baskets with both, `confidence` P(partner | product)
    among baskets, `lift` confidence / P(partner). Upsell: `support` customers who bought the
    product and then the partner in a later order, `confidence` support / customers who bought
    the product, `lift` confidence / share of all customers who bought the partner.
    """

    product_id: IntArray
    partner_id: IntArray
    rank: IntArray
    support: IntArray
    confidence: FloatArray
    lift: FloatArray

    def partners_of(self, product_id: int) -> tuple[int, ...]:
        """The partners of one product, best first (empty when it has none)."""
        low, high = np.searchsorted(self.product_id, [product_id, product_id + 1])
        return tuple(int(p) for p in self.partner_id[low:high])


@dataclass(frozen=True)
class BundleCandidates:
    """Pairs and triples bought together well above chance, most ordered first.

    `product_ids` is (n, 3), ascending within a row, NO_PRODUCT (-1) in the third slot of a pair;
    `orders` baskets that contained all of them; `lift` P(all) / product of their P;
    `combined_price` the sum of their current prices in shop currency, Decimal objects (money
    at the edge: summed exactly, with the places the prices have).
    """

    product_ids: IntArray
    orders: IntArray
    lift: FloatArray
    combined_price: NDArray[np.object_]


@dataclass(frozen=True)
class CustomerNextProducts:
    """Per customer (sorted by customer id): up to k product ids, best first, padded with
    NO_PRODUCT (-1); `reorder_day` beside each pick is the expected reorder day (days since the
    Unix epoch) of a consumable the customer owns and that is coming due again, NaN for every
    other pick."""

    customer_id: IntArray
    product_id: IntArray
    reorder_day: FloatArray

    def picks_of(self, row: int) -> tuple[int, ...]:
        """Row `row`'s product ids without the padding."""
        return tuple(int(p) for p in self.product_id[row] if p != NO_PRODUCT)


@dataclass(frozen=True)
class Recommendations:
    """Everything one run computes for a shop."""

    frequently_bought_together: ProductLinks
    bundles: BundleCandidates
    upsell: ProductLinks
    next_products: CustomerNextProducts
    replenishment_days: dict[int, float]
    # Products offered again to their owners (bought again, not consumables), ascending ids.
    bought_again: IntArray
