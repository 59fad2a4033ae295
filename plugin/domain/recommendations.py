"""Product recommendations from a shop's own orders: frequently bought together, bundle
candidates, upsell, and each customer's next products.

Inputs and outputs
------------------
In (`plugin.domain.recommendations_types`):
- `OrderLines`: one row per counted order line (order id, customer id or -1 for a guest,
  product id, day since the Unix epoch, quantity, unit price in shop currency), any row order.
- `ProductTable`: the products that may be recommended, with product type and current price.
- `RecommendationSettings`: every threshold, validated (ValueError naming the field).
- `as_of_day`: lines after it are ignored; the clock is never read.
- `replenishment_days` (optional): product id -> refill interval in days, as learned by
  `plugin.domain.replenishment.learn_replenishment` for the reorder-due flag (pass the shop's
  `ScoreReference.replenishment_days` so both agree); learned here from the lines when None.
- `scoring`: the shop's `ScoringSettings` (reorder_grace and reorder_lapse decide when a
  consumable is due, as for the flag, seen `RecommendationSettings.reorder_lead` x its interval
  ahead; the replenishment thresholds when intervals are learned here).

Out (plain int64 / float64 arrays, product and customer ids as in the input):
- `recommend(...) -> Recommendations`, everything from one pass over the lines:
  `.frequently_bought_together` and `.upsell`: `ProductLinks`, long format (product_id,
  partner_id, rank, support, confidence, lift), grouped by product id, best first;
  `.bundles`: `BundleCandidates` (product_ids (n, 3) padded with -1, orders, lift,
  combined_price); `.next_products`: `CustomerNextProducts` (customer_id (m,), product_id
  (m, k) padded with -1, reorder_day (m, k): expected reorder day of a due consumable, else
  NaN); `.replenishment_days`: the intervals used; `.bought_again`: the products offered
  again to the customers who own them (bought again, not consumables).
- `frequently_bought_together`, `bundle_candidates`, `upsell`, `next_products`: one each.

The rules and formulas are in the modules that apply them: baskets and counting in
`recommendations_baskets`, co-purchase (support, confidence, lift, bundles) in
`recommendations_together`, upsell and next-order statistics in `recommendations_sequence`,
per-customer scoring in `recommendations_next`. Consumables and their intervals come from
`plugin.domain.replenishment`, never computed twice.
"""

from __future__ import annotations

import numpy as np

from plugin.domain.recommendations_baskets import Baskets, build_baskets
from plugin.domain.recommendations_next import (
    Signals,
    buy_again,
    concat_candidates,
    consumable_items,
    customer_history,
    due_consumables,
    expand,
    first_purchases,
    owned_keys,
    rank_next_products,
)
from plugin.domain.recommendations_sequence import next_order_followers, upsell_links
from plugin.domain.recommendations_together import (
    Links,
    PairCounts,
    count_pairs,
    find_bundles,
    together_links,
)
from plugin.domain.recommendations_types import (
    NO_PRODUCT,
    BundleCandidates,
    CustomerNextProducts,
    OrderLines,
    ProductLinks,
    ProductTable,
    Recommendations,
    RecommendationSettings,
)
from plugin.domain.replenishment import learn_replenishment
from plugin.domain.scoring_types import IntArray, ProductPurchases, ScoringSettings

__all__ = [
    "NO_PRODUCT",
    "BundleCandidates",
    "CustomerNextProducts",
    "OrderLines",
    "ProductLinks",
    "ProductTable",
    "RecommendationSettings",
    "Recommendations",
    "bundle_candidates",
    "frequently_bought_together",
    "line_purchases",
    "next_products",
    "recommend",
    "upsell",
]

DEFAULTS = RecommendationSettings()


def recommend(
    lines: OrderLines,
    products: ProductTable,
    as_of_day: float,
    settings: RecommendationSettings = DEFAULTS,
    replenishment_days: dict[int, float] | None = None,
    scoring: ScoringSettings | None = None,
) -> Recommendations:
    """Every recommendation of the module docstring, sharing one basket build and one count."""
    scoring = scoring or ScoringSettings()
    baskets = build_baskets(lines, products, as_of_day, settings)
    counts = _pair_counts(baskets, settings)
    together = together_links(counts, baskets.recommendable, settings)
    purchases = line_purchases(lines, as_of_day)
    intervals = _intervals(purchases, as_of_day, scoring, replenishment_days)
    picks, bought_again = _next(
        baskets, counts, together, purchases, intervals, as_of_day, settings, scoring
    )
    return Recommendations(
        frequently_bought_together=together.with_ids(baskets.product_ids),
        bundles=find_bundles(baskets, counts, settings),
        upsell=upsell_links(baskets, settings).with_ids(baskets.product_ids),
        next_products=picks,
        replenishment_days=intervals,
        bought_again=bought_again,
    )


def frequently_bought_together(
    lines: OrderLines,
    products: ProductTable,
    as_of_day: float,
    settings: RecommendationSettings = DEFAULTS,
) -> ProductLinks:
    """Per product, up to fbt_per_product partners by lift, then confidence (see
    `recommendations_together`: support n(AB) baskets, confidence n(AB)/n(A), lift
    n(AB) N / (n(A) n(B)); pairs need fbt_min_support baskets from fbt_min_customers
    customers, fbt_min_lift, and a count independent purchases rarely reach)."""
    baskets = build_baskets(lines, products, as_of_day, settings)
    counts = _pair_counts(baskets, settings)
    return together_links(counts, baskets.recommendable, settings).with_ids(baskets.product_ids)


def bundle_candidates(
    lines: OrderLines,
    products: ProductTable,
    as_of_day: float,
    settings: RecommendationSettings = DEFAULTS,
) -> BundleCandidates:
    """Pairs and triples in bundle_min_support baskets or more from bundle_min_customers
    customers, bought together at least bundle_min_lift times as often as chance and more often
    than chance explains, most ordered first (`recommendations_together`)."""
    baskets = build_baskets(lines, products, as_of_day, settings)
    return find_bundles(baskets, _pair_counts(baskets, settings), settings)


def upsell(
    lines: OrderLines,
    products: ProductTable,
    as_of_day: float,
    settings: RecommendationSettings = DEFAULTS,
) -> ProductLinks:
    """Per product, pricier products of its type that its buyers bought in a later order,
    ranked by how many customers did (`recommendations_sequence.upsell_links`)."""
    baskets = build_baskets(lines, products, as_of_day, settings)
    return upsell_links(baskets, settings).with_ids(baskets.product_ids)


def next_products(
    lines: OrderLines,
    products: ProductTable,
    as_of_day: float,
    settings: RecommendationSettings = DEFAULTS,
    replenishment_days: dict[int, float] | None = None,
    scoring: ScoringSettings | None = None,
) -> CustomerNextProducts:
    """Each customer's next_products picks (`recommendations_next`): due consumables first,
    then products they do not own by how often baskets buy them new plus the gains their recent
    orders point to, and products of theirs that are bought again by how often they are."""
    scoring = scoring or ScoringSettings()
    baskets = build_baskets(lines, products, as_of_day, settings)
    counts = _pair_counts(baskets, settings)
    together = together_links(counts, baskets.recommendable, settings)
    purchases = line_purchases(lines, as_of_day)
    intervals = _intervals(purchases, as_of_day, scoring, replenishment_days)
    return _next(baskets, counts, together, purchases, intervals, as_of_day, settings, scoring)[0]


def line_purchases(lines: OrderLines, as_of_day: float) -> ProductPurchases:
    """The customers' lines (no guests) on or before `as_of_day`, as replenishment takes them."""
    keep = (lines.customer_id >= 0) & (lines.day <= as_of_day) & (lines.quantity > 0)
    return ProductPurchases(
        np.asarray(lines.customer_id[keep], dtype=np.int64),
        np.asarray(lines.product_id[keep], dtype=np.int64),
        np.asarray(lines.day[keep], dtype=np.float64),
        np.asarray(lines.quantity[keep], dtype=np.int64),
    )


def _pair_counts(baskets: Baskets, settings: RecommendationSettings) -> PairCounts:
    return count_pairs(baskets, min(settings.fbt_min_support, settings.bundle_min_support))


def _intervals(
    purchases: ProductPurchases,
    as_of_day: float,
    scoring: ScoringSettings,
    known: dict[int, float] | None,
) -> dict[int, float]:
    if known is not None:
        return dict(known)
    return learn_replenishment(purchases, as_of_day, scoring)


def _next(
    baskets: Baskets,
    counts: PairCounts,
    together: Links,
    purchases: ProductPurchases,
    intervals: dict[int, float],
    as_of_day: float,
    settings: RecommendationSettings,
    scoring: ScoringSettings,
) -> tuple[CustomerNextProducts, IntArray]:
    """The picks, and the product ids offered again to their owners."""
    popularity = counts.product_baskets / max(float(counts.baskets), 1.0)
    history = customer_history(baskets, settings)
    followers = next_order_followers(baskets, settings)
    co_gain = settings.co_purchase_weight * (together.confidence - popularity[together.partner])
    positive = co_gain > 0  # frequently bought together: above chance already
    parts = [
        expand(history, followers.source, followers.target, followers.gain),
        expand(history, together.anchor[positive], together.partner[positive], co_gain[positive]),
        due_consumables(baskets, purchases, intervals, as_of_day, scoring, settings.reorder_lead),
    ]
    personal = concat_candidates(parts)
    # What a customer is offered they do not own (or a consumable coming due, which ranks
    # apart): its base is how often baskets buy it new, not its share of baskets, which refills
    # of the same consumable by the same customers inflate.
    bought_new = first_purchases(baskets)
    recommendable = np.flatnonzero(baskets.recommendable)
    popular = recommendable[np.lexsort((recommendable, -bought_new[recommendable]))]
    base = bought_new / max(float(counts.baskets), 1.0)
    consumable = np.zeros(baskets.n_products, dtype=np.bool_)
    consumable[consumable_items(baskets, intervals)] = True
    again = buy_again(baskets, consumable, base, settings)
    signals = Signals(baskets, base, popular, owned_keys(baskets), personal, again)
    picks = rank_next_products(signals, baskets.customer_ids.size, settings)
    return picks, baskets.product_ids[again.repeatable]
