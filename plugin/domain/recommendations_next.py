"""Per-customer next products: consumables coming due first, then the best-scored products: those
they lack, and those of theirs the shop's customers buy again.

For customer c and a product b they lack:
    score(c, b) = p(b) + sum over products a in c's last history_orders orders of
                  w(a) x (gain_next(a -> b) + co_purchase_weight x gain_together(a -> b))
where p(b) = new(b) / N is the share of baskets that bought b new (from a guest, or from a
customer who had not bought it before: what an offer to someone who lacks b can hope for;
refills of the same consumable by its regular buyers do not count), w(a) = history_decay^j for a
in the customer's j-th most recent order (j = 0 for the last one; the largest weight when a is
in several), gain_next the shrunk next-order gain of `next_order_followers`, and gain_together
= P(b | a) - n(b) / N (n(b) the baskets with b) over a's frequently-bought-together partners
(counts that independent purchases would reach with a chance above signal_max_chance are left
out). Every term is a probability of b being bought, so a product nobody's history points to
ranks by popularity alone.

For a product b that c owns and that is bought again (not a consumable; at least
again_min_customers customers bought it in a later order, and its owners' later orders hold it
at least as often as p(b), so that owning it makes buying it more likely, not less):
    score(c, b) = (k + a r(b)) / (n + a)
the chance that c's next order holds it: n is c's counted orders after their first one with b,
k how many of those hold b, r(b) the same share over all its owners, a = again_prior_orders.
Shoppers come back for the same tea without a regular cycle: on the dev store's generated data
(bench/recommendations.py, seed 3) 48% of the customers' next purchase orders held a product
they had bought before that is not a consumable.

Never offered: products off the product table, and the customer's one-offs: products they
already own (any of their orders, oversized ones too) that are not bought again, unless it is a
consumable (it has a replenishment interval) coming due: the reorder-due rule of
`plugin.domain.replenishment` (days since its last purchase, of u units, >= reorder_grace x u x
interval and < reorder_lapse x u x interval) holds reorder_lead x u x interval days after
`as_of`.
Refills come early as often as late, so with a run every night and a lead of 0.3, 97-98% of the
dev store's refills were on offer when bought (bench/recommendations.py, seeds 3, 5, 7), against
51-55% with no lead, which is the flag's rule exactly.
Consumables coming due come first, earliest expected reorder day (last purchase + u x
interval) first; ties go to the lower product id.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from plugin.domain.recommendations_baskets import (
    Baskets,
    BoolArray,
    argsort_keys,
    distinct,
    member,
    rank_in_group,
    run_starts,
)
from plugin.domain.recommendations_types import (
    NO_PRODUCT,
    CustomerNextProducts,
    RecommendationSettings,
)
from plugin.domain.replenishment import reorder_status
from plugin.domain.scoring_types import FloatArray, IntArray, ProductPurchases, ScoringSettings

# Customers are ranked in chunks so that (customer in chunk, product) keys stay below 2**31
# (the fast packed sort of `argsort_keys`) and memory stays bounded.
KEY_SPACE = 2**31
ROWS_PER_CUSTOMER_BUDGET = 2_000_000  # popular candidates: customers x products at most this


@dataclass(frozen=True)
class Candidates:
    """Rows (dense customer, dense product) sorted by customer: `gain` to add to popularity,
    `due_day` the expected reorder day of a due consumable (NaN otherwise)."""

    customer: IntArray
    item: IntArray
    gain: FloatArray
    due_day: FloatArray


@dataclass(frozen=True)
class BuyAgain:
    """The owned products a customer may be offered again (module docstring): `keys` customer *
    P + product (dense, ascending) and their `score`; `repeatable` per dense product."""

    keys: IntArray
    score: FloatArray
    repeatable: BoolArray


@dataclass(frozen=True)
class Signals:
    """What every chunk of customers is scored against."""

    baskets: Baskets
    popularity: FloatArray
    popular: IntArray  # recommendable dense products, most popular first
    owned_keys: IntArray  # customer * P + product, sorted
    personal: Candidates  # history gains and due consumables, sorted by customer
    again: BuyAgain


def customer_history(baskets: Baskets, settings: RecommendationSettings) -> Candidates:
    """(customer, product, weight) for the products of each customer's last history_orders
    orders within the size cap, the weight history_decay^j of the most recent one."""
    index = np.flatnonzero(baskets.counted & (baskets.customer >= 0))
    customer = baskets.customer[index]
    back = _reverse_rank(customer)
    recent = back < settings.history_orders
    index, customer, back = index[recent], customer[recent], back[recent]
    item_pos, row = _basket_items(baskets, index)
    weight = settings.history_decay ** back[row].astype(np.float64)
    who = customer[row]
    item = baskets.item[item_pos]
    # Rows run from older to newer orders; after a stable sort by (customer, product) the last
    # row of each pair is its most recent order, with the largest weight.
    order = argsort_keys(who * baskets.n_products + item)
    who, item, weight = who[order], item[order], weight[order]
    last = np.append((who[1:] != who[:-1]) | (item[1:] != item[:-1]), True)[: who.size]
    nan = np.full(int(last.sum()), np.nan)
    return Candidates(who[last], item[last], weight[last], nan)


def buy_again(
    baskets: Baskets, consumable: BoolArray, base: FloatArray, settings: RecommendationSettings
) -> BuyAgain:
    """Every (customer, owned product) whose product is bought again, with its score (module
    docstring), from the counted baskets; `base` is p(b) per dense product."""
    n = baskets.n_products
    index = np.flatnonzero(baskets.counted & (baskets.customer >= 0))
    customer = baskets.customer[index]
    # An order less than a day after the last one counted is the same purchase (a split or
    # duplicate checkout), as in the replenishment rule 1: it counts neither as buying again
    # nor among the later orders.
    later_orders = _later_days(customer, baskets.day[index])
    item_pos, row = _basket_items(baskets, index)
    # Rows run by customer, then day; after a stable sort by (customer, product) the first row of
    # each pair is the customer's first order with the product.
    key = customer[row] * n + baskets.item[item_pos]
    order = argsort_keys(key)
    key = key[order]
    starts = run_starts(key)
    again = _later_days(key, baskets.day[index][row[order]])[starts]  # later orders that hold it
    later = later_orders[row[order[starts]]]  # later orders at all
    item = key[starts] % n
    rate = np.bincount(item, weights=again, minlength=n) / np.maximum(
        np.bincount(item, weights=later, minlength=n), 1
    )
    buyers_again = np.bincount(item[again > 0], minlength=n)
    repeatable = (buyers_again >= settings.again_min_customers) & (rate >= base) & ~consumable
    mine = repeatable[item]
    prior = settings.again_prior_orders
    score = (again[mine] + prior * rate[item[mine]]) / (later[mine] + prior)
    return BuyAgain(key[starts][mine], score, repeatable)


def _basket_items(baskets: Baskets, index: IntArray) -> tuple[IntArray, IntArray]:
    """The items of baskets `index`: each item's position in `baskets.item`, and which entry of
    `index` it belongs to."""
    size = baskets.size[index]
    row = np.repeat(np.arange(index.size, dtype=np.int64), size)
    item_pos = baskets.start[index][row] + np.arange(row.size) - (np.cumsum(size) - size)[row]
    return item_pos, row


def _later_days(group: IntArray, day: FloatArray) -> IntArray:
    """For rows sorted by (group, day): how many rows of the same group follow each row when a
    row counts only at least a day after the last one counted (from the row itself)."""
    n = group.size
    # the first row of the group at least a day later: merge the targets (group, day + 1)
    # among the rows, a target before a row of the same group and day
    both = np.lexsort(
        (np.repeat(np.array([1, 0]), n), np.concatenate((day, day + 1.0)), np.tile(group, 2))
    )
    is_row = both < n
    rows_before: IntArray = np.cumsum(is_row) - is_row
    step = np.empty(n, dtype=np.int64)
    step[both[~is_row] - n] = rows_before[~is_row]
    step[(step >= n) | (group[np.minimum(step, max(n - 1, 0))] != group)] = n
    # pointer doubling: count[i] is how many steps lead from row i to jump[i]
    jump = np.append(step, n)
    count = np.append(step < n, False).astype(np.int64)
    while (jump[:n] < n).any():
        count = count + count[jump]
        jump = jump[jump]
    return count[:n]


def _reverse_rank(group: IntArray) -> IntArray:
    """For rows sorted by group: how many rows of the same group follow each row."""
    rank = rank_in_group(group)
    if group.size == 0:
        return rank
    new = np.concatenate(([True], group[1:] != group[:-1]))
    size = np.diff(np.append(np.flatnonzero(new), group.size))
    return np.repeat(size, size) - 1 - rank


def expand(history: Candidates, source: IntArray, target: IntArray, gain: FloatArray) -> Candidates:
    """Each history row (c, a, w) joined with a's rows (a, b, g) of a table sorted by source:
    rows (c, b, w g)."""
    n = int(max(history.item.max(initial=-1), source.max(initial=-1))) + 1
    starts = np.searchsorted(source, np.arange(n))
    counts = np.bincount(source, minlength=n)
    fan = counts[history.item]
    first = np.repeat(starts[history.item], fan)
    pos = first + np.arange(first.size) - np.repeat(np.cumsum(fan) - fan, fan)
    return Candidates(
        customer=np.repeat(history.customer, fan),
        item=target[pos],
        gain=np.repeat(history.gain, fan) * gain[pos],
        due_day=np.full(pos.size, np.nan),
    )


def due_consumables(
    baskets: Baskets,
    purchases: ProductPurchases,
    intervals: dict[int, float],
    as_of_day: float,
    scoring: ScoringSettings,
    lead: float,
) -> Candidates:
    """(customer, consumable, expected reorder day) for every consumable a customer owns that
    is due at `as_of_day` or `lead` x what its last purchase lasts (its units x its interval)
    after it, by `reorder_status` asked one consumable at a time (every pair, not only the one
    behind the reorder-due flag), from the customers' `purchases` (`line_purchases` of the
    baskets' lines: with their units)."""
    ids = np.array(sorted(intervals), dtype=np.int64)
    rows = np.flatnonzero(member(purchases.product_id, ids))
    rows = rows[np.argsort(purchases.product_id[rows], kind="stable")]
    product_id = purchases.product_id[rows]
    parts: list[Candidates] = []
    for product in distinct(product_id).tolist():
        low, high = np.searchsorted(product_id, [product, product + 1])
        mine = rows[low:high]
        bought = ProductPurchases(
            purchases.customer_id[mine],
            product_id[low:high],
            purchases.day[mine],
            None if purchases.quantity is None else purchases.quantity[mine],
        )
        its_interval = {product: intervals[product]}
        customers = distinct(bought.customer_id)
        now = reorder_status(bought, customers, its_interval, as_of_day, scoring)
        soon = reorder_status(bought, customers, its_interval, as_of_day, scoring, lead)
        # due at as_of too: ahead, the lapse test fails in the last lead x what the purchase
        # lasts before a consumable lapses, and what the reorder-due flag calls due must stay
        # among the picks
        due = now.due | soon.due
        due_day = np.where(soon.due, soon.due_day, now.due_day)
        parts.append(
            Candidates(
                np.searchsorted(baskets.customer_ids, customers[due]).astype(np.int64),
                np.full(int(due.sum()), np.searchsorted(baskets.product_ids, product)),
                np.zeros(int(due.sum())),
                due_day[due],
            )
        )
    return concat_candidates(parts)


def consumable_items(baskets: Baskets, intervals: dict[int, float]) -> IntArray:
    """The dense products that have a replenishment interval, ascending."""
    ids = np.array(sorted(intervals), dtype=np.int64)
    slot = np.minimum(np.searchsorted(baskets.product_ids, ids), max(baskets.n_products - 1, 0))
    return slot[baskets.product_ids[slot] == ids] if baskets.n_products else slot[:0]


def concat_candidates(parts: list[Candidates]) -> Candidates:
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Candidates(empty, empty, np.zeros(0), np.zeros(0))
    merged = Candidates(
        np.concatenate([p.customer for p in parts]),
        np.concatenate([p.item for p in parts]),
        np.concatenate([p.gain for p in parts]),
        np.concatenate([p.due_day for p in parts]),
    )
    order = argsort_keys(merged.customer)
    return Candidates(
        merged.customer[order], merged.item[order], merged.gain[order], merged.due_day[order]
    )


def first_purchases(baskets: Baskets) -> IntArray:
    """Per dense product: the counted baskets that bought it new, from a guest or from a
    customer who had not bought it before (in any earlier basket, oversized ones too)."""
    basket = baskets.item_basket()
    who = baskets.customer[basket]
    # Baskets run by customer, then day: a (customer, product) key's first row is its first buy.
    key = np.where(who >= 0, who * baskets.n_products + baskets.item, -1 - np.arange(who.size))
    _, first = np.unique(key, return_index=True)
    new = np.zeros(who.size, dtype=np.bool_)
    new[first] = True
    new &= baskets.counted[basket]
    return np.bincount(baskets.item[new], minlength=baskets.n_products).astype(np.int64)


def owned_keys(baskets: Baskets) -> IntArray:
    """customer * P + product for every product a customer bought (any basket), sorted."""
    basket = baskets.item_basket()
    who = baskets.customer[basket]
    mine = who >= 0
    return distinct(who[mine] * baskets.n_products + baskets.item[mine])


def rank_next_products(
    signals: Signals, n_customers: int, settings: RecommendationSettings
) -> CustomerNextProducts:
    """Top next_products per customer (module docstring), chunk by chunk of customers.

    Only the `width` most popular products join each customer's candidates (with their own
    history's products and those they may be offered again), to bound the rows. The result is
    still the exact ranking: a product past the cut that is no candidate scores its popularity
    p(b) alone, at most that of the first product past the cut; a customer whose last pick
    could lose to it (a slot empty, or a pick that is no due consumable and scores below it, or
    equal with a higher product id, as ties go to the lower) is ranked again with a wider cut.
    """
    k = settings.next_products
    ranked = _Ranked(
        np.full((n_customers, k), -1, dtype=np.int64),
        np.full((n_customers, k), np.nan),
        np.full((n_customers, k), np.nan),
    )
    n = signals.baskets.n_products
    chunk = max(1, min(KEY_SPACE // max(n, 1), 200_000))
    width = _popular_width(signals.popular.size, n_customers, k)
    for low in range(0, n_customers, chunk):
        customers = np.arange(low, min(low + chunk, n_customers), dtype=np.int64)
        _rank_into(signals, customers, width, ranked)
    while width < signals.popular.size:
        beaten = np.flatnonzero(_may_be_beaten(signals, ranked, int(signals.popular[width])))
        if beaten.size == 0:
            break
        width = min(signals.popular.size, width * 4)
        for low in range(0, beaten.size, chunk):
            _rank_into(signals, beaten[low : low + chunk], width, ranked)
    picks = ranked.item
    product_id = np.where(picks >= 0, signals.baskets.product_ids[np.maximum(picks, 0)], NO_PRODUCT)
    return CustomerNextProducts(signals.baskets.customer_ids, product_id, ranked.due_day)


@dataclass(frozen=True)
class _Ranked:
    """Per customer (rows) and slot: the dense product picked (-1 for none), its due day (NaN
    unless a due consumable) and its score."""

    item: IntArray
    due_day: FloatArray
    score: FloatArray


def _popular_width(n_popular: int, n_customers: int, k: int) -> int:
    return min(n_popular, max(k + 8, ROWS_PER_CUSTOMER_BUDGET // max(n_customers, 1)))


def _may_be_beaten(signals: Signals, ranked: _Ranked, first_left_out: int) -> BoolArray:
    """Whether a product past the cut, scoring at most the popularity of `first_left_out` (the
    first product past it, and the lowest id among those as popular), could take a customer's
    last slot."""
    item, score = ranked.item[:, -1], ranked.score[:, -1]
    bound = signals.popularity[first_left_out]
    below = (score < bound) | ((score == bound) & (item > first_left_out))
    return np.asarray((item < 0) | (np.isnan(ranked.due_day[:, -1]) & below), dtype=np.bool_)


def _rank_into(signals: Signals, customers: IntArray, width: int, ranked: _Ranked) -> None:
    k = ranked.item.shape[1]
    rows = _chunk_rows(signals, customers, width)
    if rows.customer.size == 0:
        return
    new = np.concatenate(([True], rows.customer[1:] != rows.customer[:-1]))
    starts = np.flatnonzero(new)
    due = ~np.isnan(rows.due_day)
    # Due consumables first (earliest reorder day first), then by score; ties to the lower id,
    # which is the earlier row, as rows are sorted by product within a customer.
    primary = due.astype(np.float64)
    secondary = np.where(due, -rows.due_day, rows.gain)
    chosen = _segmented_top(starts, primary, secondary, k)
    who = rows.customer[starts]
    picked = chosen >= 0
    slot = np.maximum(chosen, 0)
    ranked.item[who] = np.where(picked, rows.item[slot], -1)
    ranked.due_day[who] = np.where(picked, rows.due_day[slot], np.nan)
    ranked.score[who] = np.where(picked, rows.gain[slot], np.nan)


def _chunk_rows(signals: Signals, customers: IntArray, width: int) -> Candidates:
    """The chunk's candidate rows, merged per (customer, product) and filtered: one row each,
    sorted by customer then product, due day kept, and in `gain` the row's whole score."""
    n = signals.baskets.n_products
    personal = signals.personal
    mine = _rows_of(personal.customer, customers)
    again = signals.again.keys[_rows_of(signals.again.keys // n, customers)]
    popular = signals.popular[:width]
    added = customers.size * popular.size + again.size
    rows = _concat_unsorted(
        Candidates(
            personal.customer[mine],
            personal.item[mine],
            personal.gain[mine],
            personal.due_day[mine],
        ),
        Candidates(  # the popular products and the customers' own bought again, scored below
            np.concatenate((np.repeat(customers, popular.size), again // n)),
            np.concatenate((np.tile(popular, customers.size), again % n)),
            np.zeros(added),
            np.full(added, np.nan),
        ),
    )
    local = np.searchsorted(customers, rows.customer)
    order = argsort_keys(local * n + rows.item)
    key = (local * n + rows.item)[order]
    new = np.concatenate(([True], key[1:] != key[:-1])) if key.size else np.zeros(0, np.bool_)
    starts = np.flatnonzero(new)
    gain = np.add.reduceat(rows.gain[order], starts) if starts.size else np.zeros(0)
    due_day = np.fmin.reduceat(rows.due_day[order], starts) if starts.size else np.zeros(0)
    customer, item = customers[key[starts] // n], key[starts] % n
    owned = member(customer * n + item, signals.owned_keys)
    again_score = _lookup(signals.again.keys, signals.again.score, customer * n + item)
    keep = signals.baskets.recommendable[item] & (
        ~owned | ~np.isnan(due_day) | ~np.isnan(again_score)
    )
    score = np.where(owned, again_score, signals.popularity[item] + gain)
    return Candidates(customer[keep], item[keep], score[keep], due_day[keep])


def _rows_of(row_customer: IntArray, customers: IntArray) -> BoolArray:
    """Which rows (sorted by customer) belong to `customers` (ascending)."""
    if customers[-1] - customers[0] + 1 == customers.size:  # a range: a slice of the rows
        low, high = np.searchsorted(row_customer, [customers[0], customers[-1] + 1])
        mine = np.zeros(row_customer.size, dtype=np.bool_)
        mine[low:high] = True
        return mine
    return member(row_customer, customers)


def _lookup(keys: IntArray, values: FloatArray, query: IntArray) -> FloatArray:
    """values[i] where keys[i] == query (keys ascending), NaN where no key matches."""
    if keys.size == 0:
        return np.full(query.size, np.nan)
    slot = np.minimum(np.searchsorted(keys, query), keys.size - 1)
    return np.where(keys[slot] == query, values[slot], np.nan)


def _concat_unsorted(first: Candidates, second: Candidates) -> Candidates:
    return Candidates(
        np.concatenate((first.customer, second.customer)),
        np.concatenate((first.item, second.item)),
        np.concatenate((first.gain, second.gain)),
        np.concatenate((first.due_day, second.due_day)),
    )


def _segmented_top(
    starts: IntArray, primary: FloatArray, secondary: FloatArray, k: int
) -> IntArray:
    """Per group (rows starts[g]..starts[g+1]-1), the row indices of its k best rows by
    (primary, secondary) descending, the earlier row on ties; -1 where a group runs out.

    k rounds of a segmented arg-max (np.maximum.reduceat): cheaper than sorting millions of
    rows when only a handful per group is wanted.
    """
    n_rows = primary.size
    sizes = np.diff(np.append(starts, n_rows))
    alive = np.ones(n_rows, dtype=np.bool_)
    chosen = np.full((starts.size, k), -1, dtype=np.int64)
    index = np.arange(n_rows)
    for r in range(k):
        first = np.where(alive, primary, -np.inf)
        best_first = np.repeat(np.maximum.reduceat(first, starts), sizes)
        level = alive & (first == best_first)
        second = np.where(level, secondary, -np.inf)
        best_second = np.repeat(np.maximum.reduceat(second, starts), sizes)
        level &= second == best_second
        pick = np.minimum.reduceat(np.where(level, index, n_rows), starts)
        found = pick < n_rows
        chosen[found, r] = pick[found]
        alive[pick[found]] = False
    return chosen
