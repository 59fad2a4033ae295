"""Vectorised baskets: line items whose prices, discounts, shipping and tax add up to a target."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from plugin.devstore.gen_catalog import CUSTOM_ITEM_PRICE_CENTS, Catalogue
from plugin.devstore.gen_config import CatalogueParams

MAX_EXTRA_QUANTITY = 3
SHIPPING_CAP_CENTS = 799


@dataclass(frozen=True)
class Baskets:
    """Flat line items (grouped by order, in order) and per-order totals, all in cents.

    total = subtotal - discounts + shipping + tax for every order.
    """

    line_order: NDArray[np.int64]
    line_variant: NDArray[np.int64]
    line_quantity: NDArray[np.int64]
    line_price: NDArray[np.int64]
    line_discount: NDArray[np.int64]
    subtotal: NDArray[np.int64]
    discounts: NDArray[np.int64]
    shipping: NDArray[np.int64]
    tax: NDArray[np.int64]
    total: NDArray[np.int64]


# Rewrites (candidates, is_complement) in place before the lines are kept: see gen_taste.
Sequencer = Callable[[NDArray[np.int64], NDArray[np.bool_]], None]


def _candidates(
    rng: np.random.Generator,
    catalogue: Catalogue,
    params: CatalogueParams,
    n: int,
    override: NDArray[np.int64] | None = None,
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    width = params.max_candidate_lines
    cand = rng.choice(catalogue.n_variants, size=(n, width), p=catalogue.variant_weight)
    cand = cand.astype(np.int64)
    if override is not None:  # taste: some lines drawn from the customer's preferences
        cand = np.where(override >= 0, override, cand)
    is_complement = np.zeros((n, width), dtype=np.bool_)
    # Planted complements: an anchor in position j pulls its partner into position j + 1.
    for j in range(width - 1):
        partner = catalogue.complement_variant[cand[:, j]]
        pull = (partner >= 0) & (rng.random(n) < params.complement_probability)
        cand[pull, j + 1] = partner[pull]
        is_complement[:, j + 1] = pull
    custom = rng.random(n) < params.custom_item_share
    cand[custom, width - 1] = catalogue.n_variants
    is_complement[custom, width - 1] = False
    return cand, is_complement


def keep_prefix(
    price: NDArray[np.int64], target: NDArray[np.int64], is_complement: NDArray[np.bool_]
) -> NDArray[np.bool_]:
    keep = np.logical_and.accumulate(np.cumsum(price, axis=1) <= target[:, None], axis=1)
    keep[:, 0] = True
    keep = np.logical_and.accumulate(keep, axis=1)
    # A complement that directly follows a kept anchor stays, even past the budget: the
    # planted pair must show up together (the overshoot becomes a discount).
    # Column by column, so a chain (anchor -> partner that is itself an anchor) stays whole.
    for j in range(price.shape[1] - 1):
        keep[:, j + 1] |= keep[:, j] & is_complement[:, j + 1]
    return keep


def _merge_duplicates(
    cand: NDArray[np.int64], keep: NDArray[np.bool_]
) -> tuple[NDArray[np.bool_], NDArray[np.int64]]:
    # The same variant twice in one cart is one line with a larger quantity, as in Shopify.
    quantity = keep.astype(np.int64)
    width = cand.shape[1]
    for later in range(1, width):
        for earlier in range(later):
            dup = keep[:, later] & keep[:, earlier] & (cand[:, later] == cand[:, earlier])
            quantity[dup, earlier] += 1
            keep[dup, later] = False
            quantity[dup, later] = 0
    return keep, quantity


def _allocate_discount(
    line_total: NDArray[np.int64], line_order: NDArray[np.int64], excess: NDArray[np.int64]
) -> NDArray[np.int64]:
    # Spread an order-level discount over its lines by value; leftover cents go to the line
    # with the largest total, which always has room for them.
    if line_order.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    subtotal = np.bincount(line_order, weights=line_total, minlength=excess.shape[0])
    share = np.where(subtotal[line_order] > 0, line_total / subtotal[line_order], 0.0)
    discount = np.floor(excess[line_order] * share).astype(np.int64)
    left = excess - np.bincount(line_order, weights=discount, minlength=excess.shape[0]).astype(
        np.int64
    )
    biggest = np.lexsort((-line_total, line_order))
    first_of_order = biggest[np.r_[True, line_order[biggest][1:] != line_order[biggest][:-1]]]
    discount[first_of_order] += left[line_order[first_of_order]]
    return discount


def build_baskets(
    rng: np.random.Generator,
    catalogue: Catalogue,
    params: CatalogueParams,
    target_cents: NDArray[np.int64],
    override: NDArray[np.int64] | None = None,
    sequencer: Sequencer | None = None,
) -> Baskets:
    """Fill each order's cart up to its target value, then make the totals add up exactly.

    Lines are drawn by popularity, kept while the running subtotal stays within the target;
    spare budget first raises the first line's quantity, then becomes shipping and tax; an
    overshoot (one line dearer than the target, or a forced complement) becomes a discount.
    `override` (orders x max_candidate_lines, -1 to keep the popularity draw) and `sequencer`
    change only which products the candidate lines are (`gen_taste`); the totals are the
    targets whatever they pick.
    """
    n = target_cents.shape[0]
    cand, is_complement = _candidates(rng, catalogue, params, n, override)
    if sequencer is not None:
        sequencer(cand, is_complement)
    prices = np.r_[catalogue.variant_price_cents, CUSTOM_ITEM_PRICE_CENTS]
    price = prices[cand]
    keep = keep_prefix(price, target_cents, is_complement)
    keep, quantity = _merge_duplicates(cand, keep)
    subtotal = (price * quantity).sum(axis=1)
    spare = target_cents - subtotal
    extra = np.clip(np.where(spare > 0, spare // price[:, 0], 0), 0, MAX_EXTRA_QUANTITY)
    quantity[:, 0] += extra
    subtotal = subtotal + extra * price[:, 0]
    rows, cols = np.nonzero(keep)
    line_total = price[rows, cols] * quantity[rows, cols]
    remainder = target_cents - subtotal
    excess = np.maximum(-remainder, 0)
    over = np.maximum(remainder, 0)
    shipping = np.minimum(over, SHIPPING_CAP_CENTS)
    return Baskets(
        line_order=rows.astype(np.int64),
        line_variant=cand[rows, cols],
        line_quantity=quantity[rows, cols],
        line_price=price[rows, cols],
        line_discount=_allocate_discount(line_total, rows.astype(np.int64), excess),
        subtotal=subtotal,
        discounts=excess,
        shipping=shipping,
        tax=over - shipping,
        total=target_cents.copy(),
    )


def single_line_baskets(catalogue: Catalogue, variant: NDArray[np.int64]) -> Baskets:
    """One line of quantity 1 per order, at list price (refills: no shipping, no discount)."""
    n = variant.shape[0]
    price = catalogue.variant_price_cents[variant]
    zeros = np.zeros(n, dtype=np.int64)
    return Baskets(
        line_order=np.arange(n, dtype=np.int64),
        line_variant=variant.astype(np.int64),
        line_quantity=np.ones(n, dtype=np.int64),
        line_price=price,
        line_discount=zeros,
        subtotal=price,
        discounts=zeros,
        shipping=zeros,
        tax=zeros,
        total=price.copy(),
    )


def concat_baskets(parts: list[Baskets]) -> Baskets:
    """Concatenate baskets of consecutive order ranges, renumbering line_order."""
    offsets = np.cumsum([0] + [p.total.shape[0] for p in parts[:-1]])
    return Baskets(
        line_order=np.concatenate([p.line_order + o for p, o in zip(parts, offsets, strict=True)]),
        line_variant=np.concatenate([p.line_variant for p in parts]),
        line_quantity=np.concatenate([p.line_quantity for p in parts]),
        line_price=np.concatenate([p.line_price for p in parts]),
        line_discount=np.concatenate([p.line_discount for p in parts]),
        subtotal=np.concatenate([p.subtotal for p in parts]),
        discounts=np.concatenate([p.discounts for p in parts]),
        shipping=np.concatenate([p.shipping for p in parts]),
        tax=np.concatenate([p.tax for p in parts]),
        total=np.concatenate([p.total for p in parts]),
    )
