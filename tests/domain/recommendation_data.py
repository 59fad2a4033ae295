"""Hand-made order lines and products for the recommendation tests; a customer's picks."""

from __future__ import annotations

import numpy as np

from plugin.domain.recommendations import NO_PRODUCT, OrderLines, ProductTable

Order = tuple[int, int, float, list[int]]  # order id, customer id (-1 guest), day, products
# products 1-7, of one type, at 10.00
A, B, C, D, E, F, G = 1, 2, 3, 4, 5, 6, 7
THINGS = ProductTable(
    np.arange(1, 8, dtype=np.int64), np.array(["Thing"] * 7), np.full(7, 10.0, dtype=np.float64)
)


def lines_of(orders: list[Order], quantity: int = 1) -> OrderLines:
    rows = [(o, c, d, p) for o, c, d, products in orders for p in products]
    return OrderLines(
        np.array([r[0] for r in rows], dtype=np.int64),
        np.array([r[1] for r in rows], dtype=np.int64),
        np.array([r[3] for r in rows], dtype=np.int64),
        np.array([r[2] for r in rows], dtype=np.float64),
        np.full(len(rows), quantity, dtype=np.int64),
        np.full(len(rows), 10.0),
    )


def guests(baskets: list[list[int]], first_order: int = 1) -> list[Order]:
    return [(first_order + i, -1, 1.0, b) for i, b in enumerate(baskets)]


def picks(result: object, customer: int) -> list[int]:
    """One customer's next products, padding left out."""
    row = int(np.searchsorted(result.customer_id, customer))  # type: ignore[attr-defined]
    return [int(p) for p in result.product_id[row] if p != NO_PRODUCT]  # type: ignore[attr-defined]
