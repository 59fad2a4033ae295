"""The recommendations job's edges: what it hands the recommender (each product's price and
type, the same whatever order the database returns the lines in), and the bundle prices it
stores."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.recommend import compute_recommendations, product_table
from plugin.store.models import (
    BundleCandidate,
    CustomerRecommendation,
    ProductRecommendation,
)
from plugin.store.recommendations import record_gone
from plugin.store.scores import BasketArrays, load_baskets
from tests.helpers import add_ledger_order, add_shop

SHIRT, HAT = 100, 200
T0 = datetime(2025, 3, 1, 23, 50, tzinfo=UTC)


def baskets_in(rows: list[tuple[int, int, float, float]]) -> BasketArrays:
    """(order id, product, day, unit price) lines of customer 7."""
    column = list(zip(*rows, strict=True))
    return BasketArrays(
        np.array(column[0], dtype=np.int64),
        np.full(len(rows), 7, dtype=np.int64),
        np.array(column[1], dtype=np.int64),
        np.array(column[2], dtype=np.float64),
        np.ones(len(rows), dtype=np.int64),
        np.array(column[3], dtype=np.float64),
        {SHIRT: "Shirts", HAT: "Hats"},
    )


def test_product_table_price_is_the_dearest_variant_of_the_latest_order_in_any_row_order() -> None:
    # given a shirt sold at 30.00 on day 40, then at 20.00 and 45.00 (two variants) in one order
    # on day 50; and a hat in two orders of one day, the later (higher id) at 12.00
    rows = [(1, SHIRT, 40.0, 30.0), (2, SHIRT, 50.0, 20.0), (2, SHIRT, 50.0, 45.0)]
    rows += [(3, HAT, 60.0, 9.0), (4, HAT, 60.0, 12.0)]
    # when the product table is made from the lines in every order
    tables = [
        product_table(baskets_in([rows[i] for i in order]))
        for order in ([0, 1, 2, 3, 4], [2, 1, 0, 4, 3], [1, 2, 4, 0, 3])
    ]
    # then the shirt costs 45.00 and the hat 12.00 every time
    for table in tables:
        assert table.product_id.tolist() == [SHIRT, HAT]
        assert table.price.tolist() == [45.0, 12.0]
        assert table.product_type.tolist() == ["Shirts", "Hats"]


def test_load_baskets_product_type_is_the_latest_one_named(engine: Engine) -> None:
    # given a shirt typed "Tops", then "Shirts" 20 minutes later in an order with a lower id,
    # then a day later on lines with no type; a hat typed "Hats", then "Caps" on a later line
    # of the same order; a mug never typed
    shop = add_shop(engine)
    assert shop.id is not None
    with Session(engine) as session, session.begin():
        add_ledger_order(session, shop.id, 30, T0, [(SHIRT, "Tops")])
        add_ledger_order(session, shop.id, 20, T0 + timedelta(minutes=20), [(SHIRT, "Shirts")])
        add_ledger_order(session, shop.id, 40, T0 + timedelta(days=1), [(SHIRT, None), (SHIRT, "")])
        add_ledger_order(session, shop.id, 50, T0, [(HAT, "Hats"), (HAT, "Caps")])
        add_ledger_order(session, shop.id, 60, T0, [(300, None)])
    # when the baskets are loaded
    types = load_baskets(engine, shop.id).product_types
    # then each product has the type of its latest line that names one (by time, then order
    # and line id), not the largest name
    assert types.get(SHIRT) == "Shirts"
    assert types.get(HAT) == "Caps"
    assert types.get(300) is None


def test_compute_recommendations_stores_the_bundle_price_with_its_three_decimals(
    engine: Engine,
) -> None:
    # given a shop in a 3-decimal currency where 12 customers bought a 1.125 and a 2.250
    # product together, among 88 orders of a third product
    shop = add_shop(engine)
    assert shop.id is not None
    with Session(engine) as session, session.begin():
        prices = {SHIRT: Decimal("1.125"), HAT: Decimal("2.250")}
        for c in range(12):
            add_ledger_order(session, shop.id, c + 1, T0, [(SHIRT, "x"), (HAT, "x")], c, prices)
        for k in range(88):
            add_ledger_order(session, shop.id, 1000 + k, T0, [(300, "x")], 100 + k)
    # when the recommendations job computes and stores them
    compute_recommendations(engine, shop, T0 + timedelta(days=1))
    # then the pair's combined price is stored exactly: 3.375, not 3.38
    with Session(engine) as session:
        prices = session.exec(
            select(BundleCandidate.combined_price).where(BundleCandidate.shop_id == shop.id)
        ).all()
    assert prices == [Decimal("3.375")]


def test_compute_recommendations_offers_no_product_the_store_no_longer_has(
    engine: Engine,
) -> None:
    # given 12 customers who bought a shirt and a hat together, among 88 orders of a mug, and a
    # hat the store has since deleted (a refused write recorded it gone)
    shop = add_shop(engine)
    assert shop.id is not None
    with Session(engine) as session, session.begin():
        for c in range(12):
            add_ledger_order(session, shop.id, c + 1, T0, [(SHIRT, "x"), (HAT, "x")], c)
        for k in range(88):
            add_ledger_order(session, shop.id, 1000 + k, T0, [(300, "x")], 100 + k)
    record_gone(engine, shop.id, {HAT: "Value references non-existent resource"}, T0)
    # when the recommendations job computes and stores them
    compute_recommendations(engine, shop, T0 + timedelta(days=1))
    # then the hat is in no list and no bundle (with it, the pair was both)
    with Session(engine) as session:
        partners = session.exec(
            select(ProductRecommendation.product_id, ProductRecommendation.other_product_id)
        ).all()
        lists = session.exec(select(CustomerRecommendation.product_ids)).all()
        bundles = session.exec(select(BundleCandidate.product_ids)).all()
    assert HAT not in {p for pair in partners for p in pair}
    offered = {p for ids in lists for p in json.loads(ids)}
    assert HAT not in offered
    assert all(str(HAT) not in ids.split() for ids in bundles)
    # and the product table leaves it out, though its lines still count
    table = product_table(baskets_in([(1, SHIRT, 1.0, 5.0), (1, HAT, 1.0, 5.0)]), {HAT})
    assert table.product_id.tolist() == [SHIRT]
