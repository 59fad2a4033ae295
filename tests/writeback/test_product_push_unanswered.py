"""Product values sent without an answer: the store applied them (or not), the response was
lost, and every retry failed (or the store answered a delete with errors, or the push lost its
lease or its process while the call was out). The values of each call are recorded as
unanswered before it is sent, and their products read back by id before the next push plans,
so that a later plan never compares against a record the store no longer matches, and a value
the app wrote to Shopify's complementary-products field is never taken for the merchant's."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from sqlmodel import Session, col, select

from jobs import runs
from jobs.context import JobContext
from jobs.writeback import push_shop, reconcile_shop
from plugin.cli_push import _print_plan
from plugin.domain.writeback import COMPLEMENTARY_PRODUCTS
from plugin.shopify.client import AdminClient, TransientError
from plugin.store.models import KeptProductField, ProductSync
from plugin.store.recommendations import Partner, replace_recommendations
from tests.devstore.conftest import AppSwitch
from tests.writeback.conftest import (
    RefusingDeletes,
    RewritingAnswers,
    Scenario,
    ScenarioFactory,
)
from tests.writeback.test_product_push import product_metafields, recommend
from tests.writeback.test_product_references import delete_product, gone

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parents[2]
gid = "gid://shopify/Product/{}".format
FBT = "clv.frequently_bought_together"
UPSELL = "clv.upsell"


def faults_of(live_switch: tuple[AppSwitch, str]) -> Any:
    return live_switch[0].target.state.devstore.faults  # type: ignore[union-attr]


def unanswered(scenario: Scenario) -> dict[int, dict[str, Any]]:
    query = select(ProductSync).where(col(ProductSync.unanswered).is_not(None))
    with Session(scenario.engine) as session:
        rows = session.exec(query).all()
    return {row.product_id: json.loads(row.unanswered or "{}") for row in rows}


def recorded(scenario: Scenario, product_id: int) -> dict[str, str]:
    with Session(scenario.engine) as session:
        row = session.get(ProductSync, (scenario.shop.id, product_id))
    return {} if row is None else json.loads(row.metafields)


def kept(scenario: Scenario) -> set[tuple[int, str]]:
    with Session(scenario.engine) as session:
        rows = session.exec(select(KeptProductField)).all()
    return {(row.product_id, row.name) for row in rows}


def product_call(query: str, variables: Mapping[str, Any] | None) -> bool:
    """Whether a request sets or deletes products' metafields (a customer's recommended
    products name products too, in its values: not its owner)."""
    return query.startswith("mutation") and '"ownerId": "gid://shopify/Product/' in json.dumps(
        variables
    )


async def pushed_in_sync(scenario: Scenario, http: httpx.AsyncClient) -> None:
    """A first push with no product recommendations and no customer's next products (those
    would change with the products' recommendations below, and go first)."""
    assert scenario.shop.id is not None
    replace_recommendations(scenario.engine, scenario.shop.id, [], [], [])
    await push_shop(scenario.context(http), scenario.refreshed_shop(), None)


async def new_partner_without_an_answer(
    scenario: Scenario, http: httpx.AsyncClient, live_switch: tuple[AppSwitch, str]
) -> tuple[JobContext, Any, tuple[int, int, int]]:
    """A product a pushed with partner b, whose partner then becomes c, pushed to a store that
    applies each mutation but whose every answer is lost (502 after it) until the push runs
    out of retries; the context, the store's faults (still on), and (a, b, c)."""
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    await pushed_in_sync(scenario, http)
    ctx = scenario.context(http)
    recommend(scenario, {a: [b]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    recommend(scenario, {a: [c]}, [])
    faults = faults_of(live_switch)
    faults.drop_share = 1.0
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    return ctx, faults, (a, b, c)


async def test_product_values_set_without_an_answer_are_read_back_before_the_next_plan(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a product pushed with partner b, whose partner then becomes c, and a store that
    # applies each mutation but whose every answer is lost (502 after it)
    scenario = scenario_factory(customers=20)
    # when the push runs out of retries
    caplog.set_level(logging.WARNING, logger="jobs.product_push")
    ctx, faults, (a, b, c) = await new_partner_without_an_answer(scenario, http, live_switch)
    # then it says so, the store took the new partner, and the value sent is recorded as
    # unanswered
    assert "product metafields of 1 product sent without an answer" in caplog.text
    assert product_metafields(scenario)[a][FBT] == [gid(c)]
    assert unanswered(scenario) == {a: {FBT: json.dumps([gid(c)])}}
    # and when the partner goes back to b, the one recorded, and the outage is over, the next
    # push reads the product back first and sends b again
    faults.drop_share = 0.0
    recommend(scenario, {a: [b]}, [])
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    assert product_metafields(scenario)[a][FBT] == [gid(b)]
    assert counts["products_read_back"] == 1 and counts["product_metafields_set"] == 1
    assert unanswered(scenario) == {}
    assert recorded(scenario, a) == {FBT: json.dumps([gid(b)])}


@pytest.mark.parametrize("then", ["push", "reconcile"])
async def test_complementary_value_written_without_an_answer_is_not_taken_for_the_merchants(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
    then: str,
) -> None:
    # given a shop asking for Shopify's complementary-products field, and the app's first
    # write to a product's field sent without an answer (the store applied it)
    scenario = scenario_factory(customers=20)
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    scenario.set_shop_settings(complementary_products=True)
    await pushed_in_sync(scenario, http)
    ctx = scenario.context(http)
    recommend(scenario, {a: [b]}, [])
    faults = faults_of(live_switch)
    faults.drop_share = 1.0
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    assert product_metafields(scenario)[a][COMPLEMENTARY_PRODUCTS] == [gid(b)]
    # when the partner changes and the next push (or a reconcile) runs
    faults.drop_share = 0.0
    recommend(scenario, {a: [c]}, [])
    run = push_shop if then == "push" else reconcile_shop
    counts = await run(ctx, scenario.refreshed_shop(), None)
    # then the value found there was the app's: replaced, not kept as the merchant's
    held = product_metafields(scenario)[a]
    assert held[COMPLEMENTARY_PRODUCTS] == held[FBT] == [gid(c)]
    assert counts["product_fields_kept"] == 0 and kept(scenario) == set()
    assert unanswered(scenario) == {}


async def test_product_values_deleted_without_an_answer_are_read_back_before_the_next_plan(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
) -> None:
    # given a product pushed with partner b, whose recommendations are then gone, and whose
    # delete the store applies without an answer
    scenario = scenario_factory(customers=20)
    a, b = sorted(scenario.devstore.state.products)[:2]
    await pushed_in_sync(scenario, http)
    ctx = scenario.context(http)
    recommend(scenario, {a: [b]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    assert scenario.shop.id is not None
    replace_recommendations(scenario.engine, scenario.shop.id, [], [], [])
    faults = faults_of(live_switch)
    faults.drop_share = 1.0
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    assert a not in product_metafields(scenario)
    assert unanswered(scenario) == {a: {FBT: None}}
    # when the recommendation comes back as it was recorded, and the next push runs
    faults.drop_share = 0.0
    recommend(scenario, {a: [b]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the store holds it again
    assert product_metafields(scenario)[a][FBT] == [gid(b)]
    assert unanswered(scenario) == {}


async def test_product_delete_refused_is_read_back_before_the_next_plan(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a product pushed with partner b, whose recommendations are then gone, and a store
    # that deletes the value but answers with an error
    scenario = scenario_factory(customers=20)
    a, b = sorted(scenario.devstore.state.products)[:2]
    await pushed_in_sync(scenario, http)
    recommend(scenario, {a: [b]}, [])
    await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    assert scenario.shop.id is not None
    replace_recommendations(scenario.engine, scenario.shop.id, [], [], [])
    transport = RefusingDeletes()
    async with httpx.AsyncClient(transport=transport, timeout=10) as refusing:
        counts = await push_shop(scenario.context(refusing), scenario.refreshed_shop(), None)
    assert transport.refused == 1 and counts["product_metafields_refused"] == 1
    assert counts["products_unanswered"] == 1  # which values the store deleted is not said
    assert a not in product_metafields(scenario)
    # when the recommendation comes back as it was recorded, and the next push runs
    recommend(scenario, {a: [b]}, [])
    counts = await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    # then the store holds it again
    assert product_metafields(scenario)[a][FBT] == [gid(b)]
    assert counts["products_read_back"] == 1 and unanswered(scenario) == {}


async def test_product_deleted_in_the_store_while_unanswered_holds_nothing(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
) -> None:
    # given a product left with a value unanswered, which the merchant then deletes
    scenario = scenario_factory(customers=20)
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    await pushed_in_sync(scenario, http)
    ctx = scenario.context(http)
    recommend(scenario, {a: [b]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    recommend(scenario, {a: [c]}, [])
    faults = faults_of(live_switch)
    faults.drop_share = 1.0
    with pytest.raises(TransientError):
        await push_shop(ctx, scenario.refreshed_shop(), None)
    delete_product(scenario, a)
    # when the recommendation goes back to the one recorded, and the next push reads it back
    faults.drop_share = 0.0
    recommend(scenario, {a: [b]}, [])
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the product holds nothing, not what was recorded, and is gone: nothing is sent to it
    assert recorded(scenario, a) == {}
    assert a in gone(scenario)
    assert counts["product_metafields_set"] == counts["product_metafields_refused"] == 0
    assert unanswered(scenario) == {}


async def test_product_values_are_recorded_unanswered_before_each_call_is_sent(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given product a pushed with partner b, whose partner then becomes c, and product d
    # pushed with partner b, whose recommendations are then gone
    scenario = scenario_factory(customers=20)
    a, b, c, d = sorted(scenario.devstore.state.products)[:4]
    await pushed_in_sync(scenario, http)
    ctx = scenario.context(http)
    recommend(scenario, {a: [b], d: [b]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    recommend(scenario, {a: [c]}, [])
    # when the push runs, the database read as each product call goes out and the store has
    # applied it (what a process killed before the answer came leaves behind)
    seen: list[dict[int, dict[str, Any]]] = []
    execute = AdminClient.execute

    async def execute_seen(self: AdminClient, query: str, variables: Any = None, **kw: Any) -> Any:
        data = await execute(self, query, variables, **kw)
        if product_call(query, variables):
            seen.append(unanswered(scenario))
        return data

    monkeypatch.setattr(AdminClient, "execute", execute_seen)
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then each call's values were recorded as unanswered before it was sent, and cleared as
    # the store's answer to them was recorded
    assert seen == [{a: {FBT: json.dumps([gid(c)])}}, {d: {FBT: None}}]
    assert unanswered(scenario) == {} and counts["products_unanswered"] == 0
    assert recorded(scenario, a) == {FBT: json.dumps([gid(c)])} and recorded(scenario, d) == {}


async def test_a_product_call_out_when_the_lease_is_lost_leaves_its_values_unanswered(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a product pushed with partner b, whose partner then becomes c, and a product call
    # the store applies, its answer still on the way when the push's lease is lost (the run's
    # database access stopped first)
    scenario = scenario_factory(customers=20)
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    await pushed_in_sync(scenario, http)
    ctx = scenario.context(http)
    recommend(scenario, {a: [b]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    recommend(scenario, {a: [c]}, [])
    out = anyio.Event()
    execute = AdminClient.execute

    async def execute_and_wait(
        self: AdminClient, query: str, variables: Any = None, **kw: Any
    ) -> Any:
        data = await execute(self, query, variables, **kw)
        if product_call(query, variables):
            out.set()
            await anyio.sleep_forever()
        return data

    async def keep_lease(ctx: Any, shop: Any, lease: Any) -> str:
        await out.wait()
        return "lease lost (test)"

    monkeypatch.setattr(AdminClient, "execute", execute_and_wait)
    monkeypatch.setattr(runs, "_keep_lease", keep_lease)
    # when the push runs as a job and loses its lease
    result = await runs.run_job(ctx, scenario.shop.id, "push", push_shop)
    # then it failed, and the value the store took is recorded as unanswered
    assert result.outcome == "failed"
    assert product_metafields(scenario)[a][FBT] == [gid(c)]
    assert unanswered(scenario) == {a: {FBT: json.dumps([gid(c)])}}
    # and when the partner goes back to b, the one recorded, the next push reads the product
    # back first and sends b again
    monkeypatch.undo()
    recommend(scenario, {a: [b]}, [])
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    assert product_metafields(scenario)[a][FBT] == [gid(b)]
    assert counts["products_read_back"] == 1 and unanswered(scenario) == {}


async def test_a_product_call_out_when_the_process_dies_leaves_its_values_unanswered(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, migrated_url: str
) -> None:
    # given a product pushed with partner b, whose partner then becomes c
    scenario = scenario_factory(customers=20)
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    await pushed_in_sync(scenario, http)
    ctx = scenario.context(http)
    recommend(scenario, {a: [b]}, [])
    await push_shop(ctx, scenario.refreshed_shop(), None)
    recommend(scenario, {a: [c]}, [])
    scenario.devstore.clock.advance(60)  # a full bucket: the process paces by its own clock
    # when a push runs in a process that is SIGKILLed once the store applied the product call
    pushing = [sys.executable, "-m", "tests.writeback.kill_push"]
    arguments = [migrated_url, str(scenario.shop.id), scenario.devstore.base_url]
    result = await anyio.run_process([*pushing, *arguments], cwd=ROOT, check=False)
    assert result.returncode == -9, result.stderr.decode()
    # then the value the store took is recorded as unanswered
    assert product_metafields(scenario)[a][FBT] == [gid(c)]
    assert unanswered(scenario) == {a: {FBT: json.dumps([gid(c)])}}
    # and when the partner goes back to b, the one recorded, the next push reads the product
    # back first and sends b again
    recommend(scenario, {a: [b]}, [])
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    assert product_metafields(scenario)[a][FBT] == [gid(b)]
    assert counts["products_read_back"] == 1 and unanswered(scenario) == {}


class Unanswering(RewritingAnswers):
    """Takes the answer out of each call setting or deleting products' metafields (which the
    store applied): each of its mutations' results null."""

    calls = 0

    def rewrite(self, sent: dict[str, Any], body: dict[str, Any]) -> None:
        if product_call(sent["query"], sent.get("variables")):
            body["data"] = dict.fromkeys(body.get("data") or {})
            self.calls += 1


async def test_a_product_whose_values_and_delete_go_unanswered_is_counted_once(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    # given product a pushed with b bought together with it and c as its upsell, whose partner
    # then becomes c, its upsell gone
    scenario = scenario_factory(customers=20)
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    assert scenario.shop.id is not None
    await pushed_in_sync(scenario, http)
    pushed = [Partner(a, "fbt", 1, b, 5, 0.5, 2.0), Partner(a, "upsell", 1, c, 5, 0.5, 2.0)]
    replace_recommendations(scenario.engine, scenario.shop.id, pushed, [], [])
    await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    partner = Partner(a, "fbt", 1, c, 5, 0.5, 2.0)
    replace_recommendations(scenario.engine, scenario.shop.id, [partner], [], [])
    # when the push's calls to the product (its values, then its delete) are applied but
    # their answers lost
    transport = Unanswering()
    caplog.set_level(logging.WARNING, logger="jobs.product_push")
    async with httpx.AsyncClient(transport=transport, timeout=10) as unanswering:
        counts = await push_shop(scenario.context(unanswering), scenario.refreshed_shop(), None)
    # then both are unanswered, not refused, and the product left unanswered is counted (and
    # told) once
    assert transport.calls == 2
    assert unanswered(scenario) == {a: {FBT: json.dumps([gid(c)]), UPSELL: None}}
    assert counts["products_unanswered"] == 1 and counts["product_metafields_refused"] == 0
    assert caplog.text.count("sent without an answer") == 1


@pytest.mark.parametrize(("count", "whose"), [(1, "1 product's"), (3, "3 products'")])
def test_dry_run_says_the_products_to_read_back_are_read_first(
    capsys: pytest.CaptureFixture[str], count: int, whose: str
) -> None:
    # given a dry run's plan with products an earlier push left values unanswered to
    plan = {
        "customers_with_tag_changes": 0,
        "customers_with_metafield_changes": 0,
        "tags_added": {},
        "tags_removed": {},
        "metafields_set": {},
        "metafields_deleted": {},
        "products_with_changes": 0,
        "products_to_read_back": count,
        "skipped_refused": 0,
        "sample": [],
    }
    # when it is printed
    _print_plan(plan)
    printed = " ".join(capsys.readouterr().out.split())
    # then it says those products are read back first, with its noun in the number it needs
    assert f"{whose} recommendation metafields will be read back from the store first" in printed
    # and says nothing of them when there are none
    _print_plan({**plan, "products_to_read_back": 0})
    assert "read back" not in capsys.readouterr().out


async def test_a_dry_run_counts_the_products_left_unanswered(
    scenario_factory: ScenarioFactory,
    http: httpx.AsyncClient,
    live_switch: tuple[AppSwitch, str],
) -> None:
    # given a product whose new partner was sent without an answer
    scenario = scenario_factory(customers=20)
    ctx, faults, _ = await new_partner_without_an_answer(scenario, http, live_switch)
    faults.drop_share = 0.0
    # when a dry run plans the next push
    plan = await push_shop(ctx, scenario.refreshed_shop(), None, dry_run=True)
    # then it counts that product as one to read back first
    assert plan["products_to_read_back"] == len(unanswered(scenario)) == 1


async def test_product_refused_group_sent_apart_without_an_answer_is_counted_unanswered(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given two products' partners, and a store that applies their values but answers their
    # group with an error naming no value, then loses its answer to the first sent apart
    scenario = scenario_factory(customers=20)
    a, b = sorted(scenario.devstore.state.products)[:2]
    await pushed_in_sync(scenario, http)
    recommend(scenario, {a: [b], b: [a]}, [])

    class RefusedThenUnanswered(RewritingAnswers):
        calls = 0

        def rewrite(self, sent: dict[str, Any], body: dict[str, Any]) -> None:
            if not product_call(sent["query"], sent.get("variables")):
                return
            self.calls += 1
            if self.calls == 1:
                body["data"]["m0"] = {"userErrors": [{"field": None, "message": "busy (test)"}]}
            else:
                assert sent["variables"]["m0"][0]["ownerId"] == gid(a)
                body["data"]["m0"] = None

    transport = RefusedThenUnanswered()
    # when pushed
    async with httpx.AsyncClient(transport=transport, timeout=10) as answering:
        counts = await push_shop(scenario.context(answering), scenario.refreshed_shop(), None)
    # then the first product's value is neither set nor refused: it is unanswered, counted so,
    # to be read back; the second's is set
    assert transport.calls == 2
    assert counts["products_unanswered"] == 1 and counts["product_metafields_set"] == 1
    assert counts["product_metafields_refused"] == 0
    assert unanswered(scenario) == {a: {FBT: json.dumps([gid(b)])}}
    assert recorded(scenario, a) == {} and recorded(scenario, b) == {FBT: json.dumps([gid(a)])}


async def test_complementary_value_unanswered_is_read_back_and_deleted_once_turned_off(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given the app's first write to a product's complementary-products field, applied by the
    # store without an answer, and the shop then no longer asking for that field
    scenario = scenario_factory(customers=20)
    a, b = sorted(scenario.devstore.state.products)[:2]
    scenario.set_shop_settings(complementary_products=True)
    await pushed_in_sync(scenario, http)
    recommend(scenario, {a: [b]}, [])
    async with httpx.AsyncClient(transport=Unanswering(), timeout=10) as unanswering:
        await push_shop(scenario.context(unanswering), scenario.refreshed_shop(), None)
    assert COMPLEMENTARY_PRODUCTS in unanswered(scenario)[a]
    scenario.set_shop_settings(complementary_products=False)
    # when pushed
    counts = await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    # then the field was read back (the app's value is there) and deleted, and nothing is left
    # to read back again
    assert counts["products_read_back"] == 1 and counts["product_metafields_deleted"] == 1
    assert product_metafields(scenario)[a] == {FBT: [gid(b)]}
    assert unanswered(scenario) == {}
    assert (await push_shop(scenario.context(http), scenario.refreshed_shop(), None))[
        "api_requests"
    ] == 0


async def test_read_back_of_an_unanswered_value_finds_a_merchants_complementary_edit(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a product pushed with its partner in its own and Shopify's complementary field,
    # then an upsell sent to it without an answer, and the merchant's own complementary list
    # put in place of the app's meanwhile
    scenario = scenario_factory(customers=20)
    a, b, c, d = sorted(scenario.devstore.state.products)[:4]
    assert scenario.shop.id is not None
    scenario.set_shop_settings(complementary_products=True)
    await pushed_in_sync(scenario, http)
    recommend(scenario, {a: [b]}, [])
    await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    upsell = Partner(a, "upsell", 1, c, 5, 0.5, 2.0)
    replace_recommendations(
        scenario.engine, scenario.shop.id, [Partner(a, "fbt", 1, b, 5, 0.5, 2.0), upsell], [], []
    )
    async with httpx.AsyncClient(transport=Unanswering(), timeout=10) as unanswering:
        await push_shop(scenario.context(unanswering), scenario.refreshed_shop(), None)
    assert unanswered(scenario) == {a: {UPSELL: json.dumps([gid(c)])}}
    fields = scenario.devstore.state.products[a].metafields
    assert fields is not None
    namespace, key = COMPLEMENTARY_PRODUCTS.rsplit(".", 1)
    fields[(namespace, key)] = replace(fields[(namespace, key)], value=json.dumps([gid(d)]))
    # when the partner changes and the next push reads the product back first
    recommend(scenario, {a: [c]}, [])
    counts = await push_shop(scenario.context(http), scenario.refreshed_shop(), None)
    # then the complementary field was read too: the merchant's list is kept, not overwritten
    assert counts["products_read_back"] == 1 and counts["product_fields_kept"] == 1
    assert kept(scenario) == {(a, COMPLEMENTARY_PRODUCTS)}
    assert product_metafields(scenario)[a][COMPLEMENTARY_PRODUCTS] == [gid(d)]
    assert product_metafields(scenario)[a][FBT] == [gid(c)]
