"""The recommendations store on its own, on SQLite and PostgreSQL: what is kept of a run, the
values sent without an answer, the read-back of products by id, and which products are gone."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

from sqlalchemy import Engine
from sqlmodel import Session, col, select

from plugin.domain.writeback import COMPLEMENTARY_PRODUCTS
from plugin.store.models import Customer, CustomerRecommendation, KeptProductField
from plugin.store.recommendations import (
    Bundle,
    Partner,
    bundle_candidates,
    gone_products,
    product_state,
    record_kept_fields,
    record_product_metafields,
    record_product_read_back,
    record_products_read,
    record_unanswered,
    replace_recommendations,
    unanswered_products,
)
from tests.helpers import T0, add_shop

FBT = "clv.frequently_bought_together"
UPSELL = "clv.upsell"
gid = "gid://shopify/Product/{}".format


def fbt(product_id: int, rank: int, other: int) -> Partner:
    return Partner(product_id, "fbt", rank, other, 5, 0.5, 2.0)


def add_customers(engine: Engine, shop_id: int, customer_ids: list[int]) -> None:
    with Session(engine) as session, session.begin():
        session.add_all(Customer(shop_id=shop_id, customer_id=c) for c in customer_ids)


def products_list(*ids: int) -> str:
    return json.dumps([gid(i) for i in ids])


def test_partners_come_back_best_first_and_bundles_ranked_from_one(engine: Engine) -> None:
    # given a run whose partners of product 1 arrive worst first, and two bundles
    shop = add_shop(engine)
    assert shop.id is not None
    partners = [fbt(1, 3, 30), fbt(1, 1, 10), fbt(1, 2, 20)]
    bundles = [Bundle((1, 2), 9, 3.0, Decimal("25.00")), Bundle((3, 4, 5), 4, 2.0, Decimal("9"))]
    replace_recommendations(engine, shop.id, partners, bundles, [])
    # then the product's partners are listed by rank, and the bundles are ranked 1 and 2
    assert [held.partners for held in product_state(engine, shop.id)] == [{"fbt": [10, 20, 30]}]
    with Session(engine) as session:
        ranked = [(b.rank, b.product_ids) for b in bundle_candidates(session, shop.id)]
    assert ranked == [(1, "1 2"), (2, "3 4 5")]


def test_a_customer_without_next_products_has_no_row(engine: Engine) -> None:
    # given two customers the shop holds, one with next products and one with none
    shop = add_shop(engine)
    assert shop.id is not None
    add_customers(engine, shop.id, [7, 8])
    replace_recommendations(engine, shop.id, [], [], [(7, [3, 4]), (8, [])])
    # then only the first has a row
    with Session(engine) as session:
        rows = session.exec(select(CustomerRecommendation)).all()
    assert [(row.customer_id, json.loads(row.product_ids)) for row in rows] == [(7, [3, 4])]


def test_unanswered_values_a_later_value_of_a_field_replaces_the_earlier(engine: Engine) -> None:
    # given two calls to product 1 sent without an answer, the second changing one field
    shop = add_shop(engine)
    assert shop.id is not None
    record_unanswered(engine, shop.id, {1: {FBT: products_list(2), UPSELL: products_list(3)}})
    record_unanswered(engine, shop.id, {1: {FBT: None}})
    # then the field holds the later value (a delete), and the other field its own
    assert unanswered_products(engine, shop.id) == {1: {FBT: None, UPSELL: products_list(3)}}


def test_an_answer_settles_only_the_fields_it_answered(engine: Engine) -> None:
    # given values of two fields of product 1 sent without an answer
    shop = add_shop(engine)
    assert shop.id is not None
    record_unanswered(engine, shop.id, {1: {FBT: products_list(2), UPSELL: products_list(3)}})
    # when a later call's answer takes the first field's value
    held = {1: {FBT: products_list(2)}}
    changes = [(1, FBT, "set", products_list(2), "test")]
    record_product_metafields(
        engine, shop.id, held, changes, via="push", job_run_id=None, now=T0, answered={1: {FBT}}
    )
    # then only the other field's value is still unanswered
    assert unanswered_products(engine, shop.id) == {1: {UPSELL: products_list(3)}}


def test_a_read_of_the_complementary_field_settles_its_unanswered_value(engine: Engine) -> None:
    # given the app's complementary products sent to product 1 without an answer
    shop = add_shop(engine)
    assert shop.id is not None
    record_unanswered(engine, shop.id, {1: {COMPLEMENTARY_PRODUCTS: products_list(2)}})
    # when product 1 is read back by id, that field with it, holding the value sent
    found = {1: {COMPLEMENTARY_PRODUCTS: products_list(2)}}
    record_product_read_back(
        engine, shop.id, found, T0, namespace="clv", shared=COMPLEMENTARY_PRODUCTS, only={1}
    )
    # then nothing is unanswered, and the value is the app's
    assert unanswered_products(engine, shop.id) == {}
    assert [held.pushed for held in product_state(engine, shop.id)] == [
        {COMPLEMENTARY_PRODUCTS: products_list(2)}
    ]


def test_a_complementary_list_the_merchant_reordered_is_theirs(engine: Engine) -> None:
    # given the app wrote products 2, 3 and 4 to product 1's complementary products
    shop = add_shop(engine)
    assert shop.id is not None
    held = {1: {COMPLEMENTARY_PRODUCTS: products_list(2, 3, 4)}}
    record_product_metafields(engine, shop.id, held, [], via="push", job_run_id=None, now=T0)
    # when it is read back holding 4 and 2 (reordered; the app's list less a product would
    # keep its order)
    found = {1: {COMPLEMENTARY_PRODUCTS: products_list(4, 2)}}
    record_product_read_back(
        engine, shop.id, found, T0, namespace="clv", shared=COMPLEMENTARY_PRODUCTS, only={1}
    )
    # then the field is the merchant's, left alone from now on
    assert [held.kept for held in product_state(engine, shop.id)] == [
        frozenset({COMPLEMENTARY_PRODUCTS})
    ]


def test_a_read_back_by_id_leaves_other_products_kept_fields(engine: Engine) -> None:
    # given product 5's complementary products are the merchant's, and the app wrote product 1's
    shop = add_shop(engine)
    assert shop.id is not None
    record_kept_fields(engine, shop.id, [(5, COMPLEMENTARY_PRODUCTS)], T0)
    held = {1: {COMPLEMENTARY_PRODUCTS: products_list(2)}}
    record_product_metafields(engine, shop.id, held, [], via="push", job_run_id=None, now=T0)
    # when product 1 alone is read back, holding the app's value
    found = {1: {COMPLEMENTARY_PRODUCTS: products_list(2)}}
    record_product_read_back(
        engine, shop.id, found, T0, namespace="clv", shared=COMPLEMENTARY_PRODUCTS, only={1}
    )
    # then product 5's field is still the merchant's
    with Session(engine) as session:
        kept = session.exec(select(col(KeptProductField.product_id))).all()
    assert kept == [5]


def test_a_catalogue_read_finds_gone_every_product_the_app_names(engine: Engine) -> None:
    # given product 1 with partner 2, customer 7 offered product 3, and metafields pushed to 4
    shop = add_shop(engine)
    assert shop.id is not None
    add_customers(engine, shop.id, [7])
    replace_recommendations(engine, shop.id, [fbt(1, 1, 2)], [], [(7, [3])])
    held = {4: {FBT: products_list(1)}}
    record_product_metafields(engine, shop.id, held, [], via="push", job_run_id=None, now=T0)
    # when the store's catalogue is read and has product 1 alone
    later = T0 + timedelta(days=1)
    missing = record_products_read(engine, shop.id, {1}, later)
    # then the partner, the offered product and the product pushed to are gone
    assert missing == 3
    assert gone_products(engine, shop.id) == {2, 3, 4}
