"""The reconcile: the store's state read back (pages or a bulk query) and drift repaired."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, col, select

from jobs import readback, writeback
from jobs.writeback import push_shop, reconcile_shop
from plugin.devstore.models import Metafield
from plugin.store.models import Customer, CustomerSync
from plugin.store.sync import mark_uncertain, record_customers_found
from tests.helpers import enqueue
from tests.writeback.conftest import Scenario, ScenarioFactory, plan_of
from tests.writeback.test_push import assert_in_sync
from webhooks.processor import Processor

pytestmark = pytest.mark.anyio


def drift(scenario: Scenario) -> tuple[int, int, int, str]:
    """Someone edits the store: a clv tag removed, a stray clv tag added (one of the app's, the
    customer should not hold), a value changed."""
    desired = scenario.desired()
    customers = scenario.devstore.state.customers
    tagged = [c for c, tags in desired.items() if tags]
    untagged = [c for c, tags in desired.items() if not tags] or tagged[-1:]
    lost, stray, edited = tagged[0], untagged[0], tagged[1]
    customers[lost].tags = [t for t in customers[lost].tags if not t.startswith("clv:")]
    stray_tag = next(t for t in ("clv:champions", "clv:lost") if t not in desired[stray])
    customers[stray].tags.append(stray_tag)
    metafields = customers[edited].metafields
    assert metafields is not None
    old = metafields[("clv", "segment")]
    metafields[("clv", "segment")] = Metafield(
        old.id, old.owner_gid, old.owner_type, "clv", "segment", "edited", old.type, "", ""
    )
    return lost, stray, edited, stray_tag


@pytest.mark.parametrize(
    ("bulk_read", "page_limit"),
    [(False, None), (True, None), (False, 10)],
    ids=["pages", "bulk-query", "pages-past-their-limit"],
)
async def test_reconcile_repairs_drift_made_in_the_store(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    bulk_read: bool,
    page_limit: int | None,
) -> None:
    # given a pushed shop that someone then edited by hand
    scenario = scenario_factory()
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    assert_in_sync(scenario)
    lost, stray, edited, stray_tag = drift(scenario)
    # (our records still say all is well: a push alone would send nothing)
    pusher = scenario.pusher(http)
    assert plan_of(pusher).items == []
    # when the reconcile runs (reading with a bulk query when the shop counts as large, or
    # when its customers are more than pages reach: Shopify's 25,000, played by a few here)
    monkeypatch.setattr(writeback, "BULK_READ_ABOVE", 1 if bulk_read else 10**9)
    if page_limit is not None:
        monkeypatch.setattr(readback, "PAGINATION_LIMIT", page_limit)
    result = await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    # then it read every customer, found the three drifted ones and repaired them
    assert result["customers_read"] == len(scenario.devstore.state.customers)
    read_in_bulk = bulk_read or page_limit is not None
    # (and the products in bulk too when the shop counts as large; else one page holds them)
    assert len(scenario.devstore.state.products) <= readback.READ_PAGE
    assert result["drifted"] == 3
    assert result["bulk_operations"] == read_in_bulk + bulk_read
    assert_in_sync(scenario)
    values = scenario.store_metafields()
    assert values[edited]["segment"] != "edited"
    assert set(scenario.desired()[lost]) <= set(scenario.devstore.state.customers[lost].tags)
    assert stray_tag not in scenario.devstore.state.customers[stray].tags


@pytest.mark.parametrize("bulk_read", [False, True], ids=["pages", "bulk-query"])
async def test_reconcile_leaves_a_merchants_tags_that_begin_with_the_prefix(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    bulk_read: bool,
) -> None:
    # given a shop whose prefix is `vip-`, where the merchant tags customers `vip-gold` and
    # `vip-champions-club` by hand, pushed
    scenario = scenario_factory()
    scenario.set_shop_settings(tag_prefix="vip-")
    customers = scenario.devstore.state.customers
    theirs = sorted(customers)[:5]
    for customer_id in theirs:
        customers[customer_id].tags += ["vip-gold", "vip-champions-club"]
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    # when the reconcile reads the store back and repairs what it finds
    monkeypatch.setattr(writeback, "BULK_READ_ABOVE", 1 if bulk_read else 10**9)
    result = await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    # then the merchant's tags are still there, nothing drifted, and the app's are as desired
    for customer_id in theirs:
        assert {"vip-gold", "vip-champions-club"} <= set(customers[customer_id].tags)
    assert result["drifted"] == 0
    desired = scenario.desired(prefix="vip-")
    for customer_id, customer in customers.items():
        ours = {t for t in customer.tags if t.startswith("vip-")} - {
            "vip-gold",
            "vip-champions-club",
        }
        assert ours == desired[customer_id], customer_id


@pytest.mark.parametrize("bulk_read", [False, True], ids=["pages", "bulk-query"])
async def test_reconcile_leaves_a_merchants_own_metafields_in_the_apps_namespace(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    bulk_read: bool,
) -> None:
    # given a pushed shop where the merchant (or a Flow) keeps values of its own in the app's
    # namespace, on a customer and on a product
    scenario = scenario_factory()
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    state = scenario.devstore.state
    customer, product = sorted(state.customers)[1], sorted(state.products)[0]
    customer_values = state.customers[customer].metafields
    assert customer_values is not None
    customer_values[("clv", "vip_note")] = Metafield(
        424242, f"gid://shopify/Customer/{customer}", "CUSTOMER", "clv", "vip_note",
        "call before shipping", "single_line_text_field", "", "",
    )  # fmt: skip
    product_values = {("clv", "care_guide"): Metafield(
        434343, f"gid://shopify/Product/{product}", "PRODUCT", "clv", "care_guide",
        "hand wash", "single_line_text_field", "", "",
    )}  # fmt: skip
    state.products[product].metafields = product_values
    # when the reconcile reads the store back (by pages, or with bulk queries)
    monkeypatch.setattr(writeback, "BULK_READ_ABOVE", 1 if bulk_read else 10**9)
    later = replace(ctx, clock=lambda: scenario.as_of + timedelta(days=1))
    result = await reconcile_shop(later, scenario.refreshed_shop(), None)
    # then they are left as they were: only the app's keys are the app's (they were deleted,
    # audited as "no value to show any more")
    assert result["drifted"] == 0 and result["metafields_deleted"] == 0
    assert customer_values[("clv", "vip_note")].value == "call before shipping"
    assert state.products[product].metafields == product_values
    assert_in_sync(scenario)


async def test_reconcile_reads_the_apps_values_beside_many_of_the_merchants_own(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a customer and a product holding a dozen of the merchant's own values in the app's
    # namespace, written before the app's (a page of the owner's first ten holds none of the
    # app's), then pushed
    scenario = scenario_factory()
    state = scenario.devstore.state
    customer, product = sorted(state.customers)[1], sorted(state.products)[0]
    for owner, kind in (
        (state.customers[customer], "Customer"),
        (state.products[product], "Product"),
    ):
        owner.metafields = {
            ("clv", f"note_{n}"): Metafield(
                n + 1,
                f"gid://shopify/{kind}/{owner.id}",
                kind.upper(),
                "clv",
                f"note_{n}",
                f"note {n}",
                "single_line_text_field",
                "",
                "",
            )
            for n in range(12)
        }
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    app_values = scenario.store_metafields()[customer]
    assert app_values.keys() > {f"note_{n}" for n in range(12)}
    # when the reconcile reads the store back by pages
    result = await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    # then it found the app's values where they were: nothing drifted, nothing sent again
    assert result["drifted"] == 0 and result["products_drifted"] == 0
    assert result["metafields_set"] == 0 and result["product_metafields_set"] == 0
    assert scenario.store_metafields()[customer] == app_values


async def test_reconcile_after_a_changed_prefix_removes_the_old_tags(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a shop pushed under clv:, whose merchant then chose the prefix ltv-
    scenario = scenario_factory(customers=60)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    scenario.set_shop_settings(tag_prefix="ltv-")
    # when reconciled (and so pushed)
    await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    # then the old tags are gone and the new ones are there
    for customer_id, tags in scenario.store_tags().items():
        assert not any(t.startswith("clv:") for t in tags), customer_id
        assert {t for t in tags if t.startswith("ltv-")} == {
            "ltv-" + t.removeprefix("clv:") for t in scenario.desired()[customer_id]
        }


async def test_reconcile_keeps_nothing_of_a_redacted_customer_the_store_still_holds(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a pushed shop, then one tagged customer redacted (the store keeps the customer)
    scenario = scenario_factory()
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    gone = next(c for c, tags in scenario.desired().items() if tags)
    payload = {"shop_domain": scenario.store.shop_domain, "customer": {"id": gone}}
    enqueue(scenario.engine, "customers/redact", payload, "redact", scenario.store.shop_domain)
    assert Processor(scenario.engine).drain().by_outcome == {"done": 1}
    # when reconciled: the store's tags and values are read back for every customer
    await reconcile_shop(ctx, scenario.refreshed_shop(), None)
    # then nothing is held for the redacted customer again
    with Session(scenario.engine) as session:
        kept = session.exec(select(CustomerSync).where(CustomerSync.customer_id == gone)).all()
    assert kept == []


async def test_reconcile_marks_deleted_a_customer_gone_from_the_store_and_stops_pushing_it(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a pushed shop, then a tagged customer deleted in the store, its customers/delete
    # webhook never delivered
    scenario = scenario_factory()
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    gone = next(c for c, tags in scenario.desired().items() if tags)
    scenario.devstore.state.delete_customer(gone)
    # when the shop is reconciled a day later
    later = replace(ctx, clock=lambda: scenario.as_of + timedelta(days=1))
    result = await reconcile_shop(later, scenario.refreshed_shop(), None)
    # then the customer is marked deleted, as the webhook would have, and holds no pushed state
    assert result["customers_gone"] == 1
    with Session(scenario.engine) as session:
        customer = session.get(Customer, (scenario.shop.id, gone))
        synced = session.get(CustomerSync, (scenario.shop.id, gone))
    assert customer is not None and customer.deleted_at is not None and synced is None
    # and nothing is planned for it any more, while the others are in sync
    pusher = scenario.pusher(http)
    assert plan_of(pusher).items == []
    assert_in_sync(scenario)
    # and a customer whose pushed state is newer than a read that missed it is left alone
    others = set(scenario.desired()) - {gone}
    found, before = others - {min(others)}, scenario.as_of - timedelta(days=1)
    assert record_customers_found(scenario.engine, scenario.shop.id, found, before, before) == []


async def test_a_read_of_the_store_that_finds_no_customer_at_all_marks_none_deleted(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a pushed shop, some of whose customers were left uncertain by a push, and a store
    # whose customer list reads back empty (not a credible read of a shop the app pushed to)
    scenario = scenario_factory()
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    assert scenario.shop.id is not None
    uncertain = sorted(scenario.desired())[:5]
    mark_uncertain(scenario.engine, scenario.shop.id, uncertain)
    for customer_id in list(scenario.devstore.state.customers):
        scenario.devstore.state.delete_customer(customer_id)
    # when the shop is reconciled a day later
    later = replace(ctx, clock=lambda: scenario.as_of + timedelta(days=1))
    result = await reconcile_shop(later, scenario.refreshed_shop(), None)
    # then no customer is marked deleted, the uncertain ones included
    assert result["customers_gone"] == 0
    with Session(scenario.engine) as session:
        deleted = session.exec(select(Customer).where(col(Customer.deleted_at).is_not(None)))
        assert deleted.all() == []


async def test_a_customer_marked_gone_whom_a_later_read_finds_is_pushed_to_again(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a pushed shop, and a read that missed a tagged customer who is in the store
    scenario = scenario_factory()
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    missed = next(c for c, tags in scenario.desired().items() if tags)
    others = set(scenario.desired()) - {missed}
    day = timedelta(days=1)
    assert record_customers_found(
        scenario.engine, scenario.shop.id, others, scenario.as_of + day, scenario.as_of + day
    ) == [missed]
    # when the shop is reconciled the day after, its read finding the customer
    later = replace(ctx, clock=lambda: scenario.as_of + 2 * day)
    result = await reconcile_shop(later, scenario.refreshed_shop(), None)
    # then the customer is no longer marked deleted, and is pushed to again: in sync
    assert result["customers_gone"] == 0
    with Session(scenario.engine) as session:
        customer = session.get(Customer, (scenario.shop.id, missed))
        synced = session.get(CustomerSync, (scenario.shop.id, missed))
    assert customer is not None and customer.deleted_at is None
    assert synced is not None and set(json.loads(synced.tags)) == scenario.desired()[missed]
    assert_in_sync(scenario)


def test_a_bulk_read_finds_metafields_wherever_they_come(tmp_path: Path) -> None:
    # an ungrouped export (API 2026-01 on): one metafield before its customer, one after
    lines = [
        {"key": "segment", "value": "champions", "__parentId": "gid://shopify/Customer/7"},
        {"id": "gid://shopify/Customer/7", "tags": ["clv:vip", "wholesale"]},
        {"id": "gid://shopify/Customer/8", "tags": []},
        {"key": "historical_value", "value": "12.50", "__parentId": "gid://shopify/Customer/7"},
        # a key that is not the app's: not its state
        {"key": "vip_note", "value": "call first", "__parentId": "gid://shopify/Customer/7"},
    ]
    export = tmp_path / "customers.jsonl"
    export.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert readback._found_in(export) == {
        7: (["clv:vip", "wholesale"], {"segment": "champions", "historical_value": "12.50"}),
        8: ([], {}),
    }


def test_a_tag_the_store_holds_in_another_spelling_is_the_apps_only_in_place_of_its_own() -> None:
    pushed = {7: ["clv:champions"], 8: ["clv:champions"]}
    found: readback.Found = {
        # a store that folds case kept the merchant's earlier spelling when the app added its tag
        7: (["CLV:Champions", "wholesale"], {}),
        # a store that tells case apart holds the app's tag as pushed, beside a merchant's own
        8: (["clv:champions", "CLV:Champions"], {}),
    }
    held = readback.owned_state(found, "clv:", pushed)
    assert held[7][0] == {"CLV:Champions"}  # the app's (the plan respells it)
    assert held[8][0] == {"clv:champions"}  # the merchant's variant is left alone
