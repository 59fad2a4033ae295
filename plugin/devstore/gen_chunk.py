"""One chunk of the generated store as flat arrays: customers, orders, lines, life cycle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from plugin.devstore.gen_baskets import Baskets, build_baskets, concat_baskets, single_line_baskets
from plugin.devstore.gen_catalog import Catalogue
from plugin.devstore.gen_config import (
    LINE_ITEM_ID_BASE,
    LINE_ITEM_ID_STRIDE,
    ORDER_ID_BASE,
    ORDER_ID_STRIDE,
    REFUND_ID_BASE,
    GeneratorConfig,
)
from plugin.devstore.gen_simulate import (
    CANCELLED,
    FULL_REFUND,
    GUEST,
    MIN_ORDER_CENTS,
    PURCHASE,
    REFILL,
    TEST,
    CustomerArrays,
    PurchaseArrays,
    draw_currency,
    extra_order_days,
    refill_days,
    share_count,
    simulate_customers,
)
from plugin.devstore.gen_taste import (
    TASTE_STREAM,
    CustomerTaste,
    draw_tastes,
    plant_sequences,
    taste_override,
    taste_tables,
)


@dataclass(frozen=True)
class OrderTable:
    """Every order of a chunk with its final state; lines grouped by order (line_start..+count).

    Days are float days since the start; NaN means "did not happen". Money in cents, shop
    currency. original_total is what was placed; current_total is what remains at the end.
    """

    order_id: NDArray[np.int64]
    customer: NDArray[np.int64]
    day: NDArray[np.float64]
    kind: NDArray[np.int64]
    currency: NDArray[np.int64]
    original_total: NDArray[np.int64]
    current_total: NDArray[np.int64]
    edit_day: NDArray[np.float64]
    refund_day: NDArray[np.float64]
    refund_cents: NDArray[np.int64]
    refund_line: NDArray[np.int64]
    refund_id: NDArray[np.int64]
    cancel_day: NDArray[np.float64]
    line_start: NDArray[np.int64]
    line_count: NDArray[np.int64]
    line_id: NDArray[np.int64]
    line_removed: NDArray[np.bool_]
    baskets: Baskets


@dataclass(frozen=True)
class Chunk:
    """Customers of a chunk (latent truth included) and their orders, plus the chunk's guests."""

    index: int
    customers: CustomerArrays
    orders: OrderTable
    profile_seed: int
    taste: CustomerTaste | None = None  # only when config.customer_taste > 0


@dataclass(frozen=True)
class _Orders:
    customer: NDArray[np.int64]
    day: NDArray[np.float64]
    kind: NDArray[np.int64]
    currency: NDArray[np.int64]


def _refills(
    rng: np.random.Generator,
    config: GeneratorConfig,
    catalogue: Catalogue,
    customers: CustomerArrays,
    purchases: PurchaseArrays,
    baskets: Baskets,
) -> tuple[_Orders, NDArray[np.int64]]:
    """Refill orders and their variants. A chain starts at each customer's first purchase line
    of each consumable product (its quantity lasts that many cycles before the first refill);
    the customer's later purchase lines of the product, from that order on, push the refills
    still to come back by their units' cycles (see refill_days)."""
    cycles = np.r_[catalogue.consumable_cycle_days, 0.0]
    consumable = np.flatnonzero(cycles[baskets.line_variant] > 0)
    owner = purchases.customer[baskets.line_order[consumable]]
    product = np.r_[catalogue.variant_product, -1][baskets.line_variant[consumable]]
    _, first, chain_of = np.unique(
        owner * (len(catalogue.products) + 1) + product, return_index=True, return_inverse=True
    )
    line = consumable[first]
    later = np.ones(consumable.shape[0], dtype=bool)
    later[first] = False
    bought = consumable[later]
    who = purchases.customer[baskets.line_order[line]]
    variant = baskets.line_variant[line]
    stop = np.minimum(customers.death_day[who], float(config.history_days))
    params = config.catalogue
    chain, day = refill_days(
        rng,
        purchases.day[baskets.line_order[line]],
        cycles[variant],
        stop,
        params.refill_noise,
        params.refill_abandon_probability,
        baskets.line_quantity[line],
        (
            chain_of[later].astype(np.int64),
            purchases.day[baskets.line_order[bought]],
            baskets.line_quantity[bought],
        ),
    )
    who = who[chain]
    refills = _Orders(who, day, np.full(day.shape[0], REFILL), customers.currency[who])
    return refills, variant[chain]


def _extras(
    rng: np.random.Generator,
    config: GeneratorConfig,
    customers: CustomerArrays,
    purchases: PurchaseArrays,
    n_real: int,
) -> tuple[_Orders, NDArray[np.int64]]:
    life = config.lifecycle
    parts: list[_Orders] = []
    targets: list[NDArray[np.int64]] = []
    horizon = float(config.history_days)
    for kind, share in ((CANCELLED, life.cancelled_share), (FULL_REFUND, life.full_refund_share)):
        picked, day = extra_order_days(rng, purchases.day, horizon, share_count(rng, n_real, share))
        who = purchases.customer[picked]
        parts.append(_Orders(who, day, np.full(day.shape[0], kind), customers.currency[who]))
        targets.append(_spend(rng, config, customers.spend_mean[who]))
    picked, day = extra_order_days(
        rng, purchases.day, horizon, share_count(rng, n_real, life.test_share)
    )
    who = purchases.customer[picked]
    parts.append(_Orders(who, day, np.full(day.shape[0], TEST), customers.currency[who]))
    targets.append(_spend(rng, config, customers.spend_mean[who]))
    n_guest = share_count(rng, n_real + sum(p.day.shape[0] for p in parts), life.guest_share)
    guest_mean = config.population.spend_p / rng.gamma(
        config.population.spend_q, 1.0 / config.population.spend_gamma, n_guest
    )
    currency = draw_currency(rng, life, n_guest)
    day = rng.uniform(0.0, horizon, n_guest)
    parts.append(
        _Orders(np.full(n_guest, -1, dtype=np.int64), day, np.full(n_guest, GUEST), currency)
    )
    targets.append(_spend(rng, config, guest_mean))
    return _concat_orders(parts), np.concatenate(targets)


def _spend(
    rng: np.random.Generator, config: GeneratorConfig, mean: NDArray[np.float64]
) -> NDArray[np.int64]:
    shape = config.population.spend_p
    value = rng.gamma(shape, mean / shape) if mean.shape[0] else np.zeros(0)
    return np.maximum(np.round(value * 100.0), MIN_ORDER_CENTS).astype(np.int64)


def _concat_orders(parts: list[_Orders]) -> _Orders:
    return _Orders(
        customer=np.concatenate([p.customer for p in parts]).astype(np.int64),
        day=np.concatenate([p.day for p in parts]),
        kind=np.concatenate([p.kind for p in parts]).astype(np.int64),
        currency=np.concatenate([p.currency for p in parts]).astype(np.int64),
    )


def _edit_lines(
    rng: np.random.Generator, catalogue: Catalogue, baskets: Baskets, edited: NDArray[np.int64]
) -> Baskets:
    # An order edit removes an item the customer first ordered: the edited order's current
    # total drops back to the planted order value. The item is a variant the order holds on
    # no other line, as a cart holds each variant on one line.
    n_variants = catalogue.n_variants
    held = baskets.line_order * n_variants + baskets.line_variant
    variant = np.zeros(edited.shape[0], dtype=np.int64)
    clash = np.ones(edited.shape[0], dtype=bool)
    while clash.any():
        variant[clash] = rng.choice(n_variants, size=int(clash.sum()), p=catalogue.variant_weight)
        clash[clash] = np.isin(edited[clash] * n_variants + variant[clash], held)
    lines = single_line_baskets(catalogue, variant)
    return Baskets(
        line_order=edited,
        line_variant=lines.line_variant,
        line_quantity=lines.line_quantity,
        line_price=lines.line_price,
        line_discount=lines.line_discount,
        subtotal=lines.subtotal,
        discounts=lines.discounts,
        shipping=lines.shipping,
        tax=lines.tax,
        total=lines.total,
    )


def _delay(
    rng: np.random.Generator, day: NDArray[np.float64], low: float, high: float, horizon: float
) -> NDArray[np.float64]:
    # Follow-ups (edits, refunds, cancellations) always land before the end of the history, so
    # the final state is exactly the last version delivered.
    wanted = day + rng.uniform(low, high, day.shape[0])
    result: NDArray[np.float64] = np.minimum(wanted, day + (horizon - day) / 2.0)
    return result


def generate_chunk(
    config: GeneratorConfig, catalogue: Catalogue, seed: int, index: int, first: int, n: int
) -> Chunk:
    """Customers first..first+n of the store, their orders and the chunk's share of guests."""
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, index]).spawn(5)]
    customers, purchases = simulate_customers(streams[0], config, first, n)
    basket_rng = streams[1]
    taste, purchase_baskets = _purchase_baskets(
        config, catalogue, seed, index, customers, purchases, basket_rng
    )
    real = _Orders(
        purchases.customer,
        purchases.day,
        np.full(purchases.day.shape[0], PURCHASE),
        customers.currency[purchases.customer],
    )
    parts, baskets = [real], [purchase_baskets]
    if config.consumable_refills:
        refills, variants = _refills(
            streams[2], config, catalogue, customers, purchases, purchase_baskets
        )
        parts.append(refills)
        baskets.append(single_line_baskets(catalogue, variants))
    n_real = sum(p.day.shape[0] for p in parts)
    extras, targets = _extras(streams[2], config, customers, purchases, n_real)
    parts.append(extras)
    baskets.append(build_baskets(basket_rng, catalogue, config.catalogue, targets))
    orders = _concat_orders(parts)
    table = _life_cycle(streams[3], config, catalogue, index, orders, concat_baskets(baskets))
    return Chunk(index, customers, table, int(streams[4].integers(0, 2**62)), taste)


def _purchase_baskets(
    config: GeneratorConfig,
    catalogue: Catalogue,
    seed: int,
    index: int,
    customers: CustomerArrays,
    purchases: PurchaseArrays,
    basket_rng: np.random.Generator,
) -> tuple[CustomerTaste | None, Baskets]:
    """The purchase orders' baskets; taste and sequential complements (gen_taste) draw from
    their own stream, so with both off the baskets are exactly the popularity ones."""
    params, target = config.catalogue, purchases.target_cents
    if config.customer_taste <= 0.0 and config.sequential_complements <= 0.0:
        return None, build_baskets(basket_rng, catalogue, params, target)
    rng = np.random.default_rng(np.random.SeedSequence([seed, index, TASTE_STREAM]))
    taste, override = None, None
    if config.customer_taste > 0.0:
        tables = taste_tables(catalogue)
        pop = config.population
        mean = pop.spend_p * pop.spend_gamma / max(pop.spend_q - 1.0, 1e-9)
        taste = draw_tastes(rng, tables, customers.spend_mean, mean, config.taste_types)
        override = taste_override(
            rng, tables, taste, purchases.customer, params.max_candidate_lines,
            config.customer_taste,
        )  # fmt: skip
    share = config.sequential_complements

    def sequencer(cand: NDArray[np.int64], is_complement: NDArray[np.bool_]) -> None:
        plant_sequences(rng, catalogue, purchases.customer, target, share, cand, is_complement)

    baskets = build_baskets(
        basket_rng, catalogue, params, target, override, sequencer if share > 0.0 else None
    )
    return taste, baskets


def _life_cycle(
    rng: np.random.Generator,
    config: GeneratorConfig,
    catalogue: Catalogue,
    index: int,
    orders: _Orders,
    baskets: Baskets,
) -> OrderTable:
    life, horizon = config.lifecycle, float(config.history_days)
    n = orders.day.shape[0]
    nan = np.full(n, np.nan)
    edited = np.flatnonzero((orders.kind == PURCHASE) & (rng.random(n) < life.edit_share))
    edit_lines = _edit_lines(rng, catalogue, baskets, edited)
    line_order = np.concatenate([baskets.line_order, edited])
    removed = np.r_[np.zeros(baskets.line_order.shape[0], bool), np.ones(edited.shape[0], bool)]
    perm = np.argsort(line_order, kind="stable")
    original = baskets.total.copy()
    np.add.at(original, edited, edit_lines.line_price)
    original_subtotal = baskets.subtotal.copy()
    np.add.at(original_subtotal, edited, edit_lines.line_price)
    edit_day = nan.copy()
    edit_day[edited] = _delay(rng, orders.day[edited], 0.02, 2.0, horizon)
    refund = _refunds(rng, config, orders, baskets, edit_day)
    cancel_day = nan.copy()
    cancelled = orders.kind == CANCELLED
    cancel_day[cancelled] = _delay(rng, orders.day[cancelled], 0.01, 3.0, horizon)
    current = baskets.total - refund[1]
    current[cancelled | (orders.kind == FULL_REFUND)] = 0
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(orders.day, kind="stable")] = np.arange(n)
    counts = np.bincount(line_order, minlength=n).astype(np.int64)
    return OrderTable(
        order_id=ORDER_ID_BASE + index * ORDER_ID_STRIDE + rank + 1,
        customer=orders.customer,
        day=orders.day,
        kind=orders.kind,
        currency=orders.currency,
        original_total=original,
        current_total=current,
        edit_day=edit_day,
        refund_day=refund[0],
        refund_cents=refund[1] + np.where(orders.kind == FULL_REFUND, baskets.total, 0),
        refund_line=refund[2],
        refund_id=REFUND_ID_BASE + index * ORDER_ID_STRIDE + np.arange(n, dtype=np.int64) + 1,
        cancel_day=cancel_day,
        line_start=np.cumsum(counts) - counts,
        line_count=counts,
        line_id=LINE_ITEM_ID_BASE + index * LINE_ITEM_ID_STRIDE + np.arange(perm.shape[0]) + 1,
        line_removed=removed[perm],
        baskets=_merge_lines(baskets, edit_lines, original_subtotal, perm),
    )


def _refunds(
    rng: np.random.Generator,
    config: GeneratorConfig,
    orders: _Orders,
    baskets: Baskets,
    edit_day: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.int64]]:
    """(refund day, partial refund cents, refunded line position within its order)."""
    n, horizon = orders.day.shape[0], float(config.history_days)
    real = (orders.kind == PURCHASE) | (orders.kind == REFILL)
    partial = real & (rng.random(n) < config.lifecycle.partial_refund_share)
    full = orders.kind == FULL_REFUND
    day = np.full(n, np.nan)
    refunded = partial | full
    after = np.fmax(orders.day, edit_day)[refunded]
    day[refunded] = _delay(rng, after, 1.0, 30.0, horizon)
    # Partial refunds return one unit of the order's first line, net of its discount, and never
    # more than 80% of the order, so a partially refunded order keeps a positive value.
    first_line = np.searchsorted(baskets.line_order, np.arange(n))
    unit = baskets.line_price[np.minimum(first_line, baskets.line_order.shape[0] - 1)]
    unit_discount = baskets.line_discount[np.minimum(first_line, baskets.line_order.shape[0] - 1)]
    qty = baskets.line_quantity[np.minimum(first_line, baskets.line_order.shape[0] - 1)]
    net_unit = unit - unit_discount // np.maximum(qty, 1)
    cents = np.where(partial, np.minimum(net_unit, (baskets.total * 8) // 10), 0).astype(np.int64)
    line = np.where(partial, 0, -1).astype(np.int64)
    return day, cents, line


def _merge_lines(
    baskets: Baskets, edit_lines: Baskets, subtotal: NDArray[np.int64], perm: NDArray[np.int64]
) -> Baskets:
    # Edit lines are appended to their orders (stable sort keeps them after the original lines).
    def both(a: NDArray[np.int64], b: NDArray[np.int64]) -> NDArray[np.int64]:
        merged: NDArray[np.int64] = np.concatenate([a, b])[perm]
        return merged

    return Baskets(
        line_order=both(baskets.line_order, edit_lines.line_order),
        line_variant=both(baskets.line_variant, edit_lines.line_variant),
        line_quantity=both(baskets.line_quantity, edit_lines.line_quantity),
        line_price=both(baskets.line_price, edit_lines.line_price),
        line_discount=both(baskets.line_discount, edit_lines.line_discount),
        subtotal=subtotal,
        discounts=baskets.discounts,
        shipping=baskets.shipping,
        tax=baskets.tax,
        total=baskets.total,
    )
