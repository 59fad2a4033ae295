"""Order lines as baskets of distinct products, and the vectorised counting the statistics share.

Products are numbered 0..P-1 in product id order ("dense" indices) so that a pair of products is
one int64 key a * P + b, sorted and counted with numpy's sort, which is many times faster than
an argsort or a lexsort on millions of rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from plugin.domain.recommendations_types import (
    OrderLines,
    ProductTable,
    RecommendationSettings,
)
from plugin.domain.scoring_types import FloatArray, IntArray

BoolArray = NDArray[np.bool_]
UNTYPED = -1


@dataclass(frozen=True)
class Baskets:
    """The shop's orders up to `as_of` as baskets of distinct products.

    Per product (dense index): `product_ids`, `recommendable` (in the product table), `price`
    (current, else last paid, else NaN), `type_code` (UNTYPED when none). Baskets are sorted by
    (customer, day, order id), guests (customer -1) first; `item` holds each basket's distinct
    products in ascending order, basket after basket, and basket b's items are
    item[start[b]:start[b] + size[b]]. `customer` is a dense index into `customer_ids` (sorted
    ids of the customers with an order), or -1 for a guest; `counted` is False for a basket
    over the size cap.
    """

    product_ids: IntArray
    recommendable: BoolArray
    price: FloatArray
    type_code: IntArray
    item: IntArray
    start: IntArray
    size: IntArray
    customer: IntArray
    day: FloatArray
    counted: BoolArray
    customer_ids: IntArray

    @property
    def n_products(self) -> int:
        return int(self.product_ids.size)

    def item_basket(self) -> IntArray:
        """Each item's basket index."""
        return np.repeat(np.arange(self.size.size, dtype=np.int64), self.size)

    def buyers(self) -> IntArray:
        """Per basket, who bought it: the dense customer, or for a guest order a number of its
        own (past the customers'), so that each guest order counts as one customer."""
        guest = self.customer_ids.size + np.arange(self.size.size, dtype=np.int64)
        return np.where(self.customer >= 0, self.customer, guest)


def validate_lines(lines: OrderLines) -> None:
    """Raise ValueError unless the arrays are 1-d, of one length, with finite days and prices."""
    shapes = {
        np.shape(getattr(lines, name))
        for name in ("order_id", "customer_id", "product_id", "day", "quantity", "unit_price")
    }
    if len(shapes) != 1 or len(shapes.pop()) != 1:
        raise ValueError("order lines must be 1-d arrays of one length")
    if not (np.all(np.isfinite(lines.day)) and np.all(np.isfinite(lines.unit_price))):
        raise ValueError("order line days and unit prices must be finite")


def validate_products(products: ProductTable) -> None:
    """Raise ValueError unless the table is 1-d, of one length, with unique product ids."""
    n = np.shape(products.product_id)
    if not (n == np.shape(products.product_type) == np.shape(products.price)) or len(n) != 1:
        raise ValueError("product_id, product_type and price must be 1-d arrays of one length")
    if distinct(np.asarray(products.product_id, dtype=np.int64)).size != n[0]:
        raise ValueError("product ids in the product table must be unique")


def build_baskets(
    lines: OrderLines, products: ProductTable, as_of_day: float, settings: RecommendationSettings
) -> Baskets:
    """Baskets of the lines on or before `as_of_day` (see `Baskets`)."""
    validate_lines(lines)
    validate_products(products)
    keep = (np.asarray(lines.day) <= as_of_day) & (np.asarray(lines.quantity) > 0)
    order_id = np.asarray(lines.order_id, dtype=np.int64)[keep]
    customer_id = np.asarray(lines.customer_id, dtype=np.int64)[keep]
    product_id = np.asarray(lines.product_id, dtype=np.int64)[keep]
    day = np.asarray(lines.day, dtype=np.float64)[keep]
    unit_price = np.asarray(lines.unit_price, dtype=np.float64)[keep]
    table_ids = np.asarray(products.product_id, dtype=np.int64)
    product_ids = distinct(np.concatenate((product_id, table_ids)))
    item = np.searchsorted(product_ids, product_id).astype(np.int64)
    order_index, order_ids = _dense_orders(order_id)
    n_orders = order_ids.size
    order_day = np.full(n_orders, np.inf)
    np.minimum.at(order_day, order_index, day)
    order_customer = np.full(n_orders, -1, dtype=np.int64)
    np.maximum.at(order_customer, order_index, customer_id)
    by_rank = np.lexsort((order_ids, order_day, order_customer))
    rank = np.empty(n_orders, dtype=np.int64)
    rank[by_rank] = np.arange(n_orders)
    n = product_ids.size
    key = distinct(rank[order_index] * n + item)  # one row per (basket, product), sorted
    basket, item = key // n, key % n
    size = np.bincount(basket, minlength=n_orders).astype(np.int64)
    customer_ids = distinct(order_customer[order_customer >= 0])
    customer = order_customer[by_rank]
    dense_customer = np.where(customer >= 0, np.searchsorted(customer_ids, customer), -1)
    return Baskets(
        product_ids=product_ids,
        recommendable=member(product_ids, distinct(table_ids)),
        price=_prices(product_ids, products, product_id, day, unit_price),
        type_code=_type_codes(product_ids, products),
        item=item,
        start=np.cumsum(size) - size,
        size=size,
        customer=dense_customer.astype(np.int64),
        day=order_day[by_rank],
        counted=size <= settings.max_basket_products,
        customer_ids=customer_ids,
    )


def _dense_orders(order_id: IntArray) -> tuple[IntArray, IntArray]:
    """Each row's order as 0..m-1 (in order id order), and the m order ids.

    A ledger hands lines over sorted by order: then a running count is the index, with no sort.
    """
    in_order = bool(np.all(order_id[1:] >= order_id[:-1]))
    order = np.arange(order_id.size) if in_order else argsort_keys(order_id)
    ordered = order_id[order]
    new = np.zeros(order_id.size, dtype=np.bool_)
    new[run_starts(ordered)] = True
    index = np.empty(order_id.size, dtype=np.int64)
    index[order] = np.cumsum(new) - 1
    return index, ordered[new]


def _prices(
    product_ids: IntArray,
    products: ProductTable,
    line_product: IntArray,
    line_day: FloatArray,
    line_price: FloatArray,
) -> FloatArray:
    """The table's current price, else the unit price of the last line sold, else NaN."""
    price = np.full(product_ids.size, np.nan)
    table_price = np.asarray(products.price, dtype=np.float64)
    price[np.searchsorted(product_ids, products.product_id)] = table_price
    unknown = np.isnan(price[np.searchsorted(product_ids, line_product)])
    if not unknown.any():
        return price
    product, day, paid = line_product[unknown], line_day[unknown], line_price[unknown]
    order = np.lexsort((paid, day, product))
    last = order[np.append(product[order][1:] != product[order][:-1], True)]
    price[np.searchsorted(product_ids, product[last])] = paid[last]
    return price


def _type_codes(product_ids: IntArray, products: ProductTable) -> IntArray:
    """Equal codes for equal product types; UNTYPED for none and for products off the table."""
    raw: NDArray[Any] = np.asarray(products.product_type)
    codes = np.full(product_ids.size, UNTYPED, dtype=np.int64)
    if raw.size == 0:
        return codes
    if raw.dtype.kind in "iu":
        table_codes = np.where(raw >= 0, raw, UNTYPED).astype(np.int64)
    else:
        names = np.array(["" if t is None else str(t).strip() for t in raw.tolist()])
        inverse = np.unique(names, return_inverse=True)[1].reshape(-1)
        table_codes = np.where(names == "", UNTYPED, inverse).astype(np.int64)
    codes[np.searchsorted(product_ids, products.product_id)] = table_codes
    return codes


def pairs_within(size: IntArray) -> tuple[IntArray, IntArray]:
    """Positions (i, j), i < j, of every two elements of one group; groups are consecutive runs
    of the given sizes. Vectorised: element i pairs with the `after[i]` elements following it in
    its group, so the pairs are laid out run by run with np.repeat."""
    size = np.asarray(size, dtype=np.int64)
    total = int(size.sum())
    start = np.cumsum(size) - size
    after = np.repeat(start + size, size) - np.arange(total) - 1
    left = np.repeat(np.arange(total, dtype=np.int64), after)
    first = np.cumsum(after) - after
    right = left + 1 + np.arange(left.size, dtype=np.int64) - np.repeat(first, after)
    return left, right


def run_starts(values: IntArray) -> IntArray:
    """Where each run of equal consecutive values begins (empty for no values)."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1]))).astype(np.int64)


def distinct(values: IntArray) -> IntArray:
    """The distinct values, ascending (numpy's sort; np.unique hashes, many times slower)."""
    ordered = np.sort(np.asarray(values, dtype=np.int64))
    if ordered.size == 0:
        return ordered
    return ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]


def member(keys: IntArray, sorted_keys: IntArray) -> BoolArray:
    """Whether each key is in `sorted_keys` (ascending)."""
    if sorted_keys.size == 0:
        return np.zeros(np.shape(keys), dtype=np.bool_)
    slot = np.minimum(np.searchsorted(sorted_keys, keys), sorted_keys.size - 1)
    return np.asarray(sorted_keys[slot] == keys, dtype=np.bool_)


def count_keys(keys: IntArray) -> tuple[IntArray, IntArray]:
    """The distinct keys, ascending, and how often each occurs."""
    if keys.size == 0:
        return keys.astype(np.int64), np.zeros(0, dtype=np.int64)
    ordered = np.sort(keys)
    new = np.concatenate(([True], ordered[1:] != ordered[:-1]))
    starts = np.flatnonzero(new)
    counts = np.diff(np.append(starts, ordered.size))
    return ordered[starts], counts.astype(np.int64)


def rank_in_group(group: IntArray) -> IntArray:
    """For rows sorted by group: each row's 0-based position within its group."""
    if group.size == 0:
        return np.zeros(0, dtype=np.int64)
    new = np.concatenate(([True], group[1:] != group[:-1]))
    starts = np.flatnonzero(new)
    sizes = np.diff(np.append(starts, group.size))
    return (np.arange(group.size) - np.repeat(starts, sizes)).astype(np.int64)


def chance_bound(observed: IntArray, expected: FloatArray) -> FloatArray:
    """An upper bound on P(N >= observed) for N ~ Poisson(expected), the count independent
    purchases would give: the Chernoff bound exp(-E) (e E / n)^n for n > E, else 1.

    Conservative (the true tail is smaller), numpy only, and sharp enough to tell a planted
    pattern (n several times E) from the noise of millions of product pairs.
    """
    n = np.asarray(observed, dtype=np.float64)
    e = np.maximum(np.asarray(expected, dtype=np.float64), 1e-300)
    log_bound = n - e - n * np.log(np.maximum(n, 1e-300) / e)
    return np.where(n > e, np.exp(np.minimum(log_bound, 0.0)), 1.0)


def argsort_keys(keys: IntArray) -> IntArray:
    """A stable argsort of non-negative int64 keys.

    Keys below 2**31 (and fewer than 2**32 of them) are packed with their row index into one
    int64 and sorted by value, which numpy does about 2.5x faster than a stable argsort.
    """
    if keys.size == 0:
        return np.zeros(0, dtype=np.int64)
    if int(keys.max()) < 2**31 and int(keys.min()) >= 0 and keys.size < 2**32:
        packed = np.sort((keys.astype(np.int64) << 32) | np.arange(keys.size, dtype=np.int64))
        return np.asarray(packed & 0xFFFFFFFF, dtype=np.int64)
    return np.asarray(np.argsort(keys, kind="stable"), dtype=np.int64)
