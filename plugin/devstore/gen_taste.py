"""Opt-in customer taste and sequential complements for the generated purchase baskets.

With `GeneratorConfig.customer_taste` and `sequential_complements` at 0 (the defaults) nothing
here runs and the generator's output is what it always was. When on, only *which products* a
purchase order's lines are changes; the order's count, day and value (its target, which the
basket's lines, quantity, discount, shipping and tax always add up to) are drawn exactly as
before, so the planted BG/NBD and Gamma-Gamma truth keeps its meaning. Refills still follow
every customer's first purchase of a consumable; guest, cancelled, refunded and test orders
keep popularity baskets.

Taste: every customer prefers `taste_types` product types (drawn in proportion to the types'
popularity, so popular types have more fans) and a price tier (Essential, Classic or Reserve,
from their planted mean order value with noise: big spenders lean to Reserve). Each candidate
line of their purchase orders is, with probability `customer_taste`, drawn from their
preferred types instead of the whole catalogue: a preferred type uniformly, then a product of
it by popularity, its preferred tier `TIER_BIAS` times as likely as another tier.

Sequential complements: after a customer bought a planted anchor without its partner (a
brewer without filters), each of their later purchase orders, with probability
`sequential_complements`, starts with the partner (its first line, which is always kept),
until they own it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from plugin.devstore.gen_baskets import keep_prefix
from plugin.devstore.gen_catalog import CUSTOM_ITEM_PRICE_CENTS, TIERS, Catalogue

TASTE_STREAM = 2**31 - 3
TIER_BIAS = 3.0
TIER_NOISE = 0.35  # sd of the noise on log(mean order value) that picks the tier
TIER_CUTS = (-0.25, 0.35)  # log(spend / population mean) below: Essential; above: Reserve


@dataclass(frozen=True)
class CustomerTaste:
    """Per customer of a chunk: preferred types (indexes into the catalogue's type list, one
    row each) and preferred tier (index into TIERS)."""

    types: NDArray[np.int64]
    tier: NDArray[np.int64]


@dataclass(frozen=True)
class TasteTables:
    """Sampling tables: for cell (type, preferred tier), variants `variant[lo:hi]` with
    cumulative weights `cell + cum` strictly increasing across cells."""

    type_names: list[str]
    type_weight: NDArray[np.float64]
    variant: NDArray[np.int64]
    key: NDArray[np.float64]
    variant_type: NDArray[np.int64]


def taste_tables(catalogue: Catalogue) -> TasteTables:
    names = list(dict.fromkeys(catalogue.product_types))
    product_type = np.array([names.index(t) for t in catalogue.product_types], dtype=np.int64)
    tier_names = [name for name, _ in TIERS]
    product_tier = np.array(
        [tier_names.index(title.split(" ", 1)[0]) for title in catalogue.product_titles],
        dtype=np.int64,
    )
    v_type = product_type[catalogue.variant_product]
    v_tier = product_tier[catalogue.variant_product]
    weight = catalogue.variant_weight
    variants: list[NDArray[np.int64]] = []
    keys: list[NDArray[np.float64]] = []
    for t in range(len(names)):
        for r in range(len(TIERS)):
            members = np.flatnonzero(v_type == t).astype(np.int64)
            w = weight[members] * np.where(v_tier[members] == r, TIER_BIAS, 1.0)
            cum = np.cumsum(w) / w.sum()
            cum[-1] = 1.0
            variants.append(members)
            keys.append(t * len(TIERS) + r + cum)
    type_weight = np.bincount(v_type, weights=weight, minlength=len(names))
    return TasteTables(
        names, type_weight / type_weight.sum(), np.concatenate(variants), np.concatenate(keys),
        v_type,
    )  # fmt: skip


def draw_tastes(
    rng: np.random.Generator,
    tables: TasteTables,
    spend_mean: NDArray[np.float64],
    population_mean: float,
    n_types: int,
) -> CustomerTaste:
    n = spend_mean.shape[0]
    k = min(n_types, len(tables.type_names))
    # Distinct types in proportion to popularity: the k smallest of Exp(1) / weight (Gumbel-top-k).
    score = rng.standard_exponential((n, len(tables.type_names))) / tables.type_weight
    types = np.argsort(score, axis=1)[:, :k].astype(np.int64)
    z = np.log(spend_mean / population_mean) + rng.normal(0.0, TIER_NOISE, n)
    tier = np.digitize(z, TIER_CUTS).astype(np.int64)
    return CustomerTaste(types, tier)


def taste_override(
    rng: np.random.Generator,
    tables: TasteTables,
    taste: CustomerTaste,
    customer: NDArray[np.int64],
    width: int,
    share: float,
) -> NDArray[np.int64]:
    """(orders, width) variants drawn from each order's customer's taste, -1 where the line
    keeps its popularity draw (probability 1 - share)."""
    n = customer.shape[0]
    use = rng.random((n, width)) < share
    pick = rng.integers(0, taste.types.shape[1], (n, width))
    t = taste.types[customer[:, None], pick]
    cell = t * len(TIERS) + taste.tier[customer][:, None]
    # u in (0, 1]: cell + u lands in the cell's own range (cell, cell + 1] of keys.
    slot = np.searchsorted(tables.key, cell + (1.0 - rng.random((n, width))), side="left")
    slot = np.minimum(slot, tables.variant.shape[0] - 1)
    return np.where(use, tables.variant[slot], -1).astype(np.int64)


def plant_sequences(
    rng: np.random.Generator,
    catalogue: Catalogue,
    customer: NDArray[np.int64],
    target_cents: NDArray[np.int64],
    share: float,
    cand: NDArray[np.int64],
    is_complement: NDArray[np.bool_],
) -> None:
    """Sequential complements (module docstring), in place on the candidate lines of purchase
    orders sorted by customer then day: order by order within each customer (all customers'
    j-th orders at once), the lines kept decide which anchors are pending for the next one."""
    n_pairs = len(catalogue.complements)
    if n_pairs == 0 or customer.shape[0] == 0:
        return
    product_index = {int(p["id"]): i for i, p in enumerate(catalogue.products)}
    first_variant = np.flatnonzero(
        np.r_[True, catalogue.variant_product[1:] != catalogue.variant_product[:-1]]
    )
    pair_of = np.full(catalogue.n_variants + 1, -1, dtype=np.int64)
    partner_product = np.zeros(n_pairs, dtype=np.int64)
    partner_variant = np.zeros(n_pairs, dtype=np.int64)
    for k, (anchor_id, partner_id) in enumerate(catalogue.complements):
        pair_of[: catalogue.n_variants][catalogue.variant_product == product_index[anchor_id]] = k
        partner_product[k] = product_index[partner_id]
        partner_variant[k] = first_variant[product_index[partner_id]]
    product_of = np.r_[catalogue.variant_product, -1]
    prices = np.r_[catalogue.variant_price_cents, CUSTOM_ITEM_PRICE_CENTS]
    new = np.r_[True, customer[1:] != customer[:-1]]
    start = np.flatnonzero(new)
    rank = np.arange(customer.shape[0]) - np.repeat(start, np.diff(np.r_[start, customer.size]))
    group = np.cumsum(new) - 1  # dense customer of each order
    pending = np.zeros((start.size, n_pairs), dtype=np.bool_)
    owns = np.zeros((start.size, n_pairs), dtype=np.bool_)
    for r in range(int(rank.max()) + 1):
        rows = np.flatnonzero(rank == r)
        who = group[rows]
        wanting = pending[who]
        planted = wanting.any(axis=1) & (rng.random(rows.size) < share)
        # A pending pair at random: the largest of uniforms over the pending ones.
        choice = np.argmax(wanting * rng.random(wanting.shape), axis=1)
        hit = rows[planted]
        cand[hit, 0] = partner_variant[choice[planted]]
        is_complement[hit, 0] = False
        if cand.shape[1] > 1:
            is_complement[hit, 1] = False  # it was pulled by the line just replaced
        c = cand[rows]
        kept = keep_prefix(prices[c], target_cents[rows], is_complement[rows])
        for k in range(n_pairs):
            owns[who, k] |= (kept & (product_of[c] == partner_product[k])).any(axis=1)
            bought = (kept & (pair_of[c] == k)).any(axis=1)
            pending[who, k] = (pending[who, k] | bought) & ~owns[who, k]
