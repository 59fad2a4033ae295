"""The recommendations job's edges: what it hands the recommender (each product's price and
type, the same whatever order the database returns the lines in, its orders on the shop's
calendar, the last full run's consumables), and what it stores and counts (partners by rank,
upsells, bundles, customers' next products, bundle prices)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.recommend import compute_recommendations, product_table
from plugin.store.models import (
    BundleCandidate,
    Customer,
    CustomerRecommendation,
    ModelRun,
    ProductRecommendation,
    Shop,
)
from plugin.store.recommendations import record_gone
from plugin.store.scores import BasketArrays, load_baskets
from tests.helpers import add_ledger_order, add_shop

SHIRT, HAT, MUG, CUP, COAT = 100, 200, 300, 400, 500
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


def test_product_table_price_is_of_the_latest_day_then_the_latest_order() -> None:
    # given a mug in order 9 of day 40 at 8.00 and in order 3 of day 50 at 6.00, and a cup in
    # orders 5 (at 7.00) and 6 (at 4.00) of one day
    rows = [(9, MUG, 40.0, 8.0), (3, MUG, 50.0, 6.0), (5, CUP, 60.0, 7.0), (6, CUP, 60.0, 4.0)]
    # when the product table is made from the lines in every order
    for order in itertools.permutations(rows):
        table = product_table(baskets_in(list(order)))
        # then the mug's price is that of the later day, the cup's that of the later order,
        # though each is the cheaper
        assert table.product_id.tolist() == [MUG, CUP]
        assert table.price.tolist() == [6.0, 4.0]


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


def a_shop_of_pairs(engine: Engine, at: datetime) -> Shop:
    """12 customers who bought a shirt and a hat together, 8 a shirt and a mug, 400 a cup alone
    (so that 8 baskets of the mug are well above chance), one who bought all four, and 5 guest
    orders of a shirt and a hat, all at `at`."""
    shop = add_shop(engine)
    assert shop.id is not None
    with Session(engine) as session, session.begin():
        for c in range(12):
            add_ledger_order(session, shop.id, c + 1, at, [(SHIRT, "x"), (HAT, "x")], c)
        for c in range(20, 28):
            add_ledger_order(session, shop.id, c + 1, at, [(SHIRT, "x"), (MUG, "x")], c)
        for c in range(100, 500):
            add_ledger_order(session, shop.id, c + 1, at, [(CUP, "x")], c)
        everything: list[tuple[int, str | None]] = [
            (SHIRT, "x"),
            (HAT, "x"),
            (MUG, "x"),
            (CUP, "x"),
        ]
        add_ledger_order(session, shop.id, 900, at, everything, 50)
        for k in range(5):
            add_ledger_order(session, shop.id, 1000 + k, at, [(SHIRT, "x"), (HAT, "x")], None)
        customers = [*range(12), *range(20, 28), *range(100, 500), 50]
        session.add_all(Customer(shop_id=shop.id, customer_id=c) for c in customers)
    return shop


def test_compute_recommendations_stores_ranked_partners_and_counts_what_it_stored(
    engine: Engine,
) -> None:
    # given the shop of pairs
    shop = a_shop_of_pairs(engine, T0)
    # when the recommendations job computes and stores them
    found = compute_recommendations(engine, shop, T0 + timedelta(days=1))
    # then the shirt's partners are the hat and the mug, ranked 1 and 2, and the hat's and the
    # mug's the shirt: 3 products with partners
    with Session(engine) as session:
        partners = session.exec(
            select(
                ProductRecommendation.product_id,
                ProductRecommendation.rank,
                ProductRecommendation.other_product_id,
            ).where(ProductRecommendation.kind == "fbt")
        ).all()
        bundles = session.exec(select(BundleCandidate.product_ids)).all()
        stored = session.exec(select(CustomerRecommendation.customer_id)).all()
    assert sorted(partners) == [(SHIRT, 1, HAT), (SHIRT, 2, MUG), (HAT, 1, SHIRT), (MUG, 1, SHIRT)]
    assert found["products_with_partners"] == 3
    # and the one bundle is the pair, two products
    assert bundles == [f"{SHIRT} {HAT}"] and found["bundle_candidates"] == 1
    # and the customers counted with next products are those stored: not the one who owns
    # every product (nothing is left to offer), nor the guests
    assert 50 not in stored
    assert found["customers_with_next_products"] == len(stored) > 0


def test_compute_recommendations_reads_the_orders_on_the_shops_calendar(engine: Engine) -> None:
    # given a shop in New York whose orders were all placed an hour before the job runs
    # (in UTC, a day that starts five hours before New York's)
    as_of = T0 + timedelta(days=3)
    shop = a_shop_of_pairs(engine, as_of - timedelta(hours=1))
    with Session(engine, expire_on_commit=False) as session, session.begin():
        shop.iana_timezone = "America/New_York"
        session.add(shop)
    # when the recommendations job runs, then every order counts (read as UTC days against a
    # New York as-of, each would be after it)
    assert compute_recommendations(engine, shop, as_of)["products_with_partners"] == 3


def test_compute_recommendations_takes_the_consumables_of_the_last_full_run(
    engine: Engine,
) -> None:
    # given the shop of pairs, 30 days on, and a full run that learned a 20-day mug interval
    # (the orders alone show no repeat buyer: no consumable)
    shop = a_shop_of_pairs(engine, T0)
    assert shop.id is not None
    as_of = T0 + timedelta(days=30)
    reference = json.dumps({"replenishment_days": {str(MUG): 20.0}})
    with Session(engine) as session, session.begin():
        session.add(
            ModelRun(
                shop_id=shop.id,
                kind="full",
                started_at=as_of,
                seconds=1.0,
                as_of=as_of,
                repeat_model="rules",
                repeat_params="{}",
                confidence="rules",
                reference=reference,
            )
        )
    # when the recommendations job runs
    compute_recommendations(engine, shop, as_of)
    # then a customer who bought the mug 30 days ago is offered it again: it is due
    with Session(engine) as session:
        row = session.get(CustomerRecommendation, (shop.id, 20))
    assert row is not None and MUG in json.loads(row.product_ids)


def test_compute_recommendations_stores_upsells(engine: Engine) -> None:
    # given 4 customers who bought a 10.00 shirt and, ten days later, a 30.00 coat of its type
    shop = add_shop(engine)
    assert shop.id is not None
    prices = {SHIRT: Decimal("10"), COAT: Decimal("30")}
    with Session(engine) as session, session.begin():
        for c in range(4):
            add_ledger_order(session, shop.id, 10 + c, T0, [(SHIRT, "Tops")], c, prices)
            later = T0 + timedelta(days=10)
            add_ledger_order(session, shop.id, 20 + c, later, [(COAT, "Tops")], c, prices)
    # when the recommendations job computes and stores them
    found = compute_recommendations(engine, shop, T0 + timedelta(days=11))
    # then the coat is stored as the shirt's upsell
    with Session(engine) as session:
        upsells = session.exec(
            select(ProductRecommendation.product_id, ProductRecommendation.other_product_id).where(
                ProductRecommendation.kind == "upsell"
            )
        ).all()
    assert upsells == [(SHIRT, COAT)] and found["products_with_partners"] == 1
