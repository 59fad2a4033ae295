"""Refusals in the push, against the live dev store: one refused owner no longer takes its
metafieldsSet group with it (customers per call and in bulk, products), an unanswered set is not
recorded as held, a refused set beside an accepted delete records only what the store holds, and
a refused tag change is audited by what it tried."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from sqlmodel import Session, col, select

from jobs.plan import Plan
from jobs.product_push import plan_products
from jobs.pusher import (
    AUDIT_NAME_LENGTH,
    Apart,
    _line_user_errors,
    _refused_tags,
    products_not_found,
    refused_inputs,
)
from jobs.writeback import push_shop, shop_writeback_settings
from plugin.devstore.config import DevStoreConfig
from plugin.domain.writeback import CustomerChange
from plugin.store.ledger import mark_customer_deleted
from plugin.store.models import (
    CustomerRecommendation,
    CustomerScore,
    CustomerSync,
    ModelRun,
    ProductSync,
    SyncChange,
)
from plugin.store.recommendations import Partner, replace_recommendations
from plugin.store.scores import latest_full_run
from plugin.store.sync import uncertain_customers
from plugin.wording import counted
from tests.writeback.conftest import (
    RecordsRequests,
    RewritingAnswers,
    Scenario,
    ScenarioFactory,
    plan_of,
)
from tests.writeback.test_product_push import product_metafields, recommend

pytestmark = pytest.mark.anyio
OWNER_GONE = "Owner does not exist."


def scored(scenario: Scenario) -> list[int]:
    with Session(scenario.engine) as session:
        return sorted(session.exec(select(CustomerScore.customer_id)).all())


def recorded_metafields(scenario: Scenario) -> dict[int, dict[str, str]]:
    with Session(scenario.engine) as session:
        rows = session.exec(select(CustomerSync)).all()
    return {row.customer_id: json.loads(row.metafields) for row in rows}


def refusals(scenario: Scenario, kind: str) -> list[SyncChange]:
    with Session(scenario.engine) as session:
        query = select(SyncChange).where(SyncChange.kind == kind, SyncChange.action == "refused")
        return list(session.exec(query).all())


def recommend_to(scenario: Scenario, customer_id: int, product_ids: list[int]) -> None:
    with Session(scenario.engine) as session, session.begin():
        row = session.get(CustomerRecommendation, (scenario.shop.id, customer_id))
        if row is None:
            row = CustomerRecommendation(shop_id=scenario.shop.id, customer_id=customer_id)
        row.product_ids = json.dumps(product_ids)
        session.add(row)


def set_confidence(scenario: Scenario, confidence: str) -> None:
    run = latest_full_run(scenario.engine, scenario.shop.id)
    assert run is not None
    with Session(scenario.engine) as session, session.begin():
        stored = session.get(ModelRun, run.id)
        assert stored is not None
        stored.confidence = confidence


def assert_neighbours_set_and_only_the_gone_refused(scenario: Scenario, gone: int) -> None:
    held = scenario.store_metafields()
    recorded = recorded_metafields(scenario)
    innocent = [c for c in scored(scenario) if c != gone]
    assert all(held[c].get("segment") for c in innocent)
    assert all(recorded[c] == held[c] for c in innocent)
    refused = refusals(scenario, "metafield")
    assert [(r.customer_id, r.reason) for r in refused] == [(gone, OWNER_GONE)]
    assert recorded.get(gone, {}) == {}


async def push_then_make_segments_stale(scenario: Scenario, http: httpx.AsyncClient) -> Plan:
    """Push the shop, then record every customer's segment as out of date: the next plan
    sets that one value for each customer."""
    pusher = scenario.pusher(http)
    await pusher.push(plan_of(pusher))
    with Session(scenario.engine) as session, session.begin():
        for row in session.exec(select(CustomerSync)).all():
            row.metafields = json.dumps({**json.loads(row.metafields), "segment": "stale"})
    return plan_of(pusher)


async def test_metafields_per_call_customer_deleted_in_store_refuses_only_itself(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a scored customer deleted in Shopify (its customers/delete not yet in), sharing a
    # metafieldsSet group with others, and a bucket small enough that a follow-up call charged
    # more than it declared would be throttled
    scenario = scenario_factory(config=DevStoreConfig(bucket_size=600, restore_rate=50))
    gone = scored(scenario)[0]
    scenario.devstore.state.delete_customer(gone)
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    assert len(plan.items) < pusher.settings.bulk_threshold
    # when pushed call by call
    counts = await pusher.push(plan)
    # then its neighbours hold their values, recorded as held, and only it is refused, by
    # its own error
    assert_neighbours_set_and_only_the_gone_refused(scenario, gone)
    wanted = sum(len(i.change.set_metafields) for i in plan.items if i.change.customer_id != gone)
    assert counts.metafields_set == wanted
    assert pusher.client.stats.throttled == 0
    # and the next plan sends only its values again
    again = plan_of(pusher)
    assert [i.change.customer_id for i in again.items if i.change.set_metafields] == [gone]


async def test_metafields_in_bulk_customer_deleted_in_store_refuses_only_itself(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given the same deleted customer, and a shop pushed in bulk
    scenario = scenario_factory()
    gone = scored(scenario)[0]
    scenario.devstore.state.delete_customer(gone)
    scenario.set_shop_settings(bulk_threshold=1)
    pusher = scenario.pusher(http)
    # when pushed
    counts = await pusher.push(plan_of(pusher))
    # then the refused group was sent again customer by customer, after the bulk operation:
    # its neighbours hold their values and only the deleted customer is refused
    assert counts.bulk_operations >= 2
    assert_neighbours_set_and_only_the_gone_refused(scenario, gone)
    with Session(scenario.engine) as session:
        vias = set(session.exec(select(SyncChange.via).where(SyncChange.action == "set")).all())
    assert vias == {"bulk", "call"}


async def test_product_metafields_naming_a_deleted_product_refuse_only_that_product(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given eight products' partners in one metafieldsSet group, the first naming a product
    # since deleted from the store
    scenario = scenario_factory()
    products = sorted(scenario.devstore.state.products)
    gone, bad = products[-1], products[0]
    fbt = {bad: [gone]} | {products[i]: [products[i + 1]] for i in range(1, 8)}
    recommend(scenario, fbt, [])
    scenario.devstore.state.products.pop(gone)
    ctx = scenario.context(http)
    # when pushed
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then the seven others hold their partners, and only the first is refused
    held = product_metafields(scenario)
    assert sorted(held) == sorted(p for p in fbt if p != bad)
    assert counts["product_metafields_set"] == 7 and counts["product_metafields_refused"] == 1
    refused = refusals(scenario, "metafield")
    assert [r.product_id for r in refused] == [bad]
    assert str(gone) in refused[0].reason
    # and the deleted product is known gone: the next plan names it nowhere, so the first
    # product, whose only partner it was, has nothing to send
    settings = shop_writeback_settings(scenario.refreshed_shop())
    assert plan_products(scenario.engine, scenario.shop.id, settings) == []


class LosesAnswers(RewritingAnswers):
    """The first `times` requests of several metafieldsSet groups each come back without the
    second group's answer. (An answer null with a top-level error is not enough: the client
    raises on any error, so the only unknown answer it passes on is a missing one.)"""

    def __init__(self, times: int = 1) -> None:
        super().__init__()
        self.times = times
        self.lost: list[list[str]] = []  # per request cut: the owners whose answer was lost

    def rewrite(self, sent: dict[str, Any], body: dict[str, Any]) -> None:
        if len(self.lost) == self.times or "metafieldsSet" not in sent.get("query", ""):
            return
        if len(sent.get("variables", {})) < 2:
            return
        del body["data"]["m1"]
        self.lost.append(sorted({value["ownerId"] for value in sent["variables"]["m1"]}))

    def customers(self) -> set[int]:
        return {int(owner.rsplit("/", 1)[1]) for owners in self.lost for owner in owners}


async def test_metafields_group_without_an_answer_is_not_recorded_as_set(
    scenario_factory: ScenarioFactory,
) -> None:
    # given a push whose second metafieldsSet group gets no answer
    scenario = scenario_factory()
    transport = LosesAnswers()
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        pusher = scenario.pusher(http)
        # when pushed
        await pusher.push(plan_of(pusher))
    # then those customers' values are neither recorded as held nor audited as set or refused
    assert transport.lost
    unanswered = transport.customers()
    recorded = recorded_metafields(scenario)
    assert all(recorded.get(c, {}) == {} for c in unanswered)
    with Session(scenario.engine) as session:
        audited = session.exec(
            select(SyncChange).where(
                SyncChange.kind == "metafield", col(SyncChange.customer_id).in_(unanswered)
            )
        ).all()
    assert audited == []
    # and they are counted unanswered and stay marked, to be read back
    assert pusher.counts.customers_uncertain == len(unanswered)
    assert set(uncertain_customers(scenario.engine, scenario.shop.id)) == unanswered
    # and the next plan sends them again
    again = plan_of(pusher)
    assert unanswered <= {i.change.customer_id for i in again.items if i.change.set_metafields}


async def test_customers_left_without_answers_by_several_calls_are_counted_together(
    scenario_factory: ScenarioFactory,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # given a push in requests of two metafieldsSet groups, two of which each lose one
    # group's answer
    monkeypatch.setattr("jobs.pusher.SETS_PER_CALL", 2)
    scenario = scenario_factory()
    transport = LosesAnswers(times=2)
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        pusher = scenario.pusher(http)
        # when pushed
        with caplog.at_level(logging.WARNING, logger="jobs.pusher"):
            counts = await pusher.push(plan_of(pusher))
    # then the customers of both are counted uncertain and stay marked, to be read back
    assert len(transport.lost) == 2
    unanswered = transport.customers()
    assert counts.customers_uncertain == len(unanswered) > len(transport.lost[1])
    assert set(uncertain_customers(scenario.engine, scenario.shop.id)) == unanswered
    # and each call that lost answers is logged once, by its count of customers alone
    warned = [r.getMessage() for r in caplog.records if "no answer" in r.getMessage()]
    assert warned == [
        f"{scenario.shop.domain}: no answer for the changes of {counted(len(owners), 'customer')}"
        ": read back before the next push"
        for owners in transport.lost
    ]


async def test_refused_set_beside_an_accepted_delete_records_only_what_the_store_holds(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given values pushed while the shop's models were fitted (predictions included)
    scenario = scenario_factory()
    set_confidence(scenario, "fitted")
    pusher = scenario.pusher(http)
    await pusher.push(plan_of(pusher))
    customer = scored(scenario)[3]
    assert "p_alive" in scenario.store_metafields()[customer]
    # and then the models no longer fit (predictions to delete), and the customer is
    # recommended a product since deleted from the store (a value the store refuses)
    set_confidence(scenario, "rules")
    gone = sorted(scenario.devstore.state.products)[0]
    scenario.devstore.state.products.pop(gone)
    recommend_to(scenario, customer, [gone])
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    change = next(i.change for i in plan.items if i.change.customer_id == customer)
    assert change.set_metafields and "p_alive" in change.delete_metafields
    # when pushed: its set refused, its delete accepted
    await pusher.push(plan)
    # then what is recorded as held is what the store holds, not the refused value
    held = scenario.store_metafields()[customer]
    assert "p_alive" not in held and "recommended_products" not in held
    assert recorded_metafields(scenario)[customer] == held
    # and the product the store refused is known gone: the next plan names it no more (the
    # customer's only recommendation: nothing left to set)
    again = plan_of(pusher)
    assert customer not in {i.change.customer_id for i in again.items if i.change.set_metafields}


async def test_product_set_beside_a_delete_records_the_values_set(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a product's partners pushed to its own field and Shopify's complementary one
    scenario = scenario_factory()
    a, b, c = sorted(scenario.devstore.state.products)[:3]
    recommend(scenario, {a: [b]}, [])
    scenario.set_shop_settings(complementary_products=True)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    # when its partner changes and the shop stops asking for the complementary field (one
    # value set, one deleted)
    recommend(scenario, {a: [c]}, [])
    scenario.set_shop_settings(complementary_products=False)
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    assert counts["product_metafields_set"] == 1 and counts["product_metafields_deleted"] == 1
    # then the recorded state holds the new value: the next plan has nothing to send
    settings = shop_writeback_settings(scenario.refreshed_shop())
    assert plan_products(scenario.engine, scenario.shop.id, settings) == []


async def test_refused_tag_removal_is_audited_by_the_tags_it_tried(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a tagged customer deleted in Shopify whose tags should now all go
    scenario = scenario_factory()
    pusher = scenario.pusher(http)
    await pusher.push(plan_of(pusher))
    customer = next(c for c, tags in scenario.desired().items() if tags)
    scenario.devstore.state.delete_customer(customer)
    with Session(scenario.engine) as session, session.begin():
        score = session.get(CustomerScore, (scenario.shop.id, customer))
        assert score is not None
        score.tags = ""
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    change = next(i.change for i in plan.items if i.change.customer_id == customer)
    assert change.remove and not change.add
    # when pushed
    await pusher.push(plan)
    # then the refusal is audited with the removals it tried
    refused = refusals(scenario, "tag")
    assert [(r.customer_id, r.name) for r in refused] == [
        (customer, " ".join(f"-{tag}" for tag in change.remove))
    ]


async def test_a_customer_deleted_by_its_webhook_is_sent_nothing_more(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a pushed shop, then a tagged customer deleted in Shopify and its customers/delete
    # applied (the ledger marks it deleted)
    scenario = scenario_factory(customers=20)
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    gone = min(c for c, values in scenario.store_metafields().items() if values)
    scenario.devstore.state.delete_customer(gone)
    with Session(scenario.engine) as session, session.begin():
        mark_customer_deleted(session, scenario.shop.id, gone, scenario.as_of)
    audited = audit_rows(scenario, gone)
    # when the shop is pushed again
    result = await push_shop(ctx, scenario.refreshed_shop(), None)
    # then nothing was sent to it, so nothing is audited as taken off it, and no pushed state
    # is kept for a customer the store no longer holds
    assert result["customers_tagged"] == result["metafields_deleted"] == 0
    assert result["customers_refused"] == result["metafields_refused"] == 0
    with Session(scenario.engine) as session:
        assert session.get(CustomerSync, (scenario.shop.id, gone)) is None
    assert audit_rows(scenario, gone) == audited


def audit_rows(scenario: Scenario, customer_id: int) -> int:
    with Session(scenario.engine) as session:
        query = select(SyncChange).where(col(SyncChange.customer_id) == customer_id)
        return len(session.exec(query).all())


@pytest.mark.parametrize("bulk_threshold", [1000, 1])
async def test_sets_of_one_value_each_are_sent_25_to_a_metafields_set(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, bulk_threshold: int
) -> None:
    # given a pushed shop whose records say each customer's segment is out of date, so that the
    # next push sets one value for each of more than 26 customers
    scenario = scenario_factory()
    scenario.set_shop_settings(bulk_threshold=bulk_threshold)
    plan = await push_then_make_segments_stale(scenario, http)
    assert 26 < len(plan.items) <= 250
    assert all(len(item.change.set_metafields) == 1 for item in plan.items)
    # when pushed, as calls or as one bulk operation
    transport = RecordsRequests()
    async with httpx.AsyncClient(transport=transport, timeout=10) as counted:
        counts = await scenario.pusher(counted).push(plan)
    # then the store, which takes at most 25 values a metafieldsSet, took every group as sent:
    # one request of groups per call, or none beside the bulk operation (a refused group would
    # have been sent again customer by customer)
    assert len(transport.holding("metafieldsSet")) == (1 if bulk_threshold > len(plan.items) else 0)
    assert counts.metafields_refused == 0 and counts.metafields_set == len(plan.items)
    assert refusals(scenario, "metafield") == []
    assert recorded_metafields(scenario) == scenario.store_metafields()


async def test_customers_sent_apart_go_25_to_a_request(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a pushed shop whose next push sets one value for each of more than 50 customers,
    # in groups of 25 that each hold a customer deleted in Shopify: every group is refused
    scenario = scenario_factory()
    plan = await push_then_make_segments_stale(scenario, http)
    customers = [item.change.customer_id for item in plan.items]
    threshold = scenario.pusher(http).settings.bulk_threshold
    assert 50 < len(customers) <= 75 and threshold > len(customers)
    for gone in customers[::25]:
        scenario.devstore.state.delete_customer(gone)
    # when pushed
    transport = RecordsRequests()
    async with httpx.AsyncClient(transport=transport, timeout=10) as counted:
        counts = await scenario.pusher(counted).push(plan)
    # then after the request of groups, every customer was sent again in a metafieldsSet of its
    # own, 25 of them a request (250 points)
    grouped, *apart = transport.holding("metafieldsSet")
    assert len(grouped["variables"]) == 3
    assert [len(request["variables"]) for request in apart] == [25, 25, len(customers) - 50]
    sent = [v[0]["ownerId"] for request in apart for v in request["variables"].values()]
    assert sent == [f"gid://shopify/Customer/{c}" for c in customers]
    assert counts.metafields_set == len(customers) - 3 and counts.metafields_refused == 3


async def test_product_sent_apart_keeps_its_other_values_on_record(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a product pushed with a partner and an upsell, whose partner then changes, in the
    # same metafieldsSet group as a product whose new partner was deleted from the store
    scenario = scenario_factory()
    a, b, c, d, bad, deleted = sorted(scenario.devstore.state.products)[:6]
    assert scenario.shop.id is not None
    upsell = Partner(a, "upsell", 1, c, 3, None, None)
    replace_recommendations(
        scenario.engine, scenario.shop.id, [Partner(a, "fbt", 1, b, 5, 0.5, 2.0), upsell], [], []
    )
    ctx = scenario.context(http)
    await push_shop(ctx, scenario.refreshed_shop(), None)
    partners = [
        Partner(a, "fbt", 1, d, 5, 0.5, 2.0),
        upsell,
        Partner(bad, "fbt", 1, deleted, 5, 0.5, 2.0),
    ]
    replace_recommendations(scenario.engine, scenario.shop.id, partners, [], [])
    scenario.devstore.state.products.pop(deleted)
    # when pushed (the group refused, its products sent apart)
    counts = await push_shop(ctx, scenario.refreshed_shop(), None)
    assert counts["product_metafields_set"] == 1 and counts["product_metafields_refused"] == 1
    # then the product's record holds its new partner and the upsell it kept: nothing to send
    with Session(scenario.engine) as session:
        row = session.get(ProductSync, (scenario.shop.id, a))
    assert row is not None
    assert json.loads(row.metafields) == {
        "clv.frequently_bought_together": json.dumps([f"gid://shopify/Product/{d}"]),
        "clv.upsell": json.dumps([f"gid://shopify/Product/{c}"]),
    }
    settings = shop_writeback_settings(scenario.refreshed_shop())
    assert plan_products(scenario.engine, scenario.shop.id, settings) == []


@pytest.mark.parametrize("with_deletes", [False, True])
async def test_customer_sent_apart_is_recorded_with_all_the_store_holds(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient, with_deletes: bool
) -> None:
    # given values pushed while the shop's models were fitted
    scenario = scenario_factory()
    set_confidence(scenario, "fitted")
    pusher = scenario.pusher(http)
    await pusher.push(plan_of(pusher))
    # and then a customer recommended a product (and, with deletes, the models no longer
    # fitting: its predictions to delete), in one metafieldsSet group with a customer since
    # deleted in Shopify, which the store refuses whole
    customer, gone = scored(scenario)[:2]
    product = sorted(scenario.devstore.state.products)[0]
    recommend_to(scenario, customer, [product])
    recommend_to(scenario, gone, [product])
    scenario.devstore.state.delete_customer(gone)
    if with_deletes:
        set_confidence(scenario, "rules")
    pusher = scenario.pusher(http)
    plan = plan_of(pusher)
    assert [i.change.customer_id for i in plan.items if i.change.set_metafields] == [
        customer,
        gone,
    ]
    # when pushed (the group refused, its customers sent apart)
    counts = await pusher.push(plan)
    assert counts.metafields_set == 1 and counts.metafields_refused == 1
    # then the customer's record holds every value the store holds, earlier ones and the one
    # set apart, less those deleted: the next plan has nothing for it
    assert recorded_metafields(scenario)[customer] == scenario.store_metafields()[customer]
    again = plan_of(pusher)
    assert customer not in {i.change.customer_id for i in again.items}


async def test_customer_sent_apart_without_an_answer_stays_marked(
    scenario_factory: ScenarioFactory,
) -> None:
    # given a store that applies the customers' values but answers their first group with an
    # error naming no value, then loses its answer to the first customer sent apart
    scenario = scenario_factory(customers=20)

    class RefusedThenUnanswered(RewritingAnswers):
        lost: str | None = None

        def rewrite(self, sent: dict[str, Any], body: dict[str, Any]) -> None:
            if "metafieldsSet" not in sent["query"]:
                return
            if self.lost is None and len(sent["variables"]["m0"]) > 1:
                body["data"]["m0"] = {"userErrors": [{"field": None, "message": "busy (test)"}]}
                self.lost = ""
            elif self.lost == "":
                self.lost = sent["variables"]["m0"][0]["ownerId"]
                body["data"]["m0"] = None

    transport = RefusedThenUnanswered()
    async with httpx.AsyncClient(transport=transport, timeout=10) as http:
        pusher = scenario.pusher(http)
        # when pushed
        counts = await pusher.push(plan_of(pusher))
    # then that customer is neither recorded nor refused: counted unanswered and marked, to be
    # read back; the others sent apart are recorded
    assert transport.lost
    lost = int(transport.lost.rsplit("/", 1)[1])
    assert counts.customers_uncertain == 1 and counts.metafields_refused == 0
    assert uncertain_customers(scenario.engine, scenario.shop.id) == [lost]
    recorded = recorded_metafields(scenario)
    assert recorded.get(lost, {}) == {}
    assert all(recorded[c] == scenario.store_metafields()[c] for c in scored(scenario) if c != lost)


def test_refusals_are_audited_by_value_unless_every_one_of_several_is_refused() -> None:
    values = [("segment", "champions"), ("p_alive", "0.9")]
    why = [{"message": OWNER_GONE}]
    # one value of one refused: named, with its value
    assert Apart(refused={0: why}).refusals(values[:1]) == [("segment", "champions", OWNER_GONE)]
    # one of two refused: named
    assert Apart(accepted=[0], refused={1: why}).refusals(values) == [
        ("p_alive", "0.9", OWNER_GONE)
    ]
    # both of two refused (a deleted owner): one row for them all
    assert Apart(refused={0: why, 1: why}).refusals(values) == [("*", None, OWNER_GONE)]


def test_only_a_refusal_saying_a_product_does_not_exist_names_it_gone() -> None:
    sent = {"ownerId": "gid://shopify/Product/7", "value": '["gid://shopify/Product/5"]'}
    missing = "Value references non-existent resource gid://shopify/Product/5."
    # a partner named in the message and in the value sent
    assert products_not_found({"message": missing}, sent) == {5}
    # the product owner itself, by the error's field path
    owner = {"field": ["metafields", "0", "ownerId"], "message": "Owner does not exist."}
    assert products_not_found(owner, sent) == {7}
    # a refusal for another reason that names the product is no sign it is gone
    invalid = {"message": "Value is invalid: gid://shopify/Product/5 is not published."}
    assert products_not_found(invalid, sent) == set()


def user_error(*path: str) -> dict[str, Any]:
    """A user error the store might answer, naming the field at `path`."""
    return {"field": list(path), "message": "refused (test)"}


def test_refused_inputs_are_named_only_by_a_field_path_into_the_inputs_sent() -> None:
    value, whole = user_error("metafields", "1", "value"), user_error("metafields", "0")
    # a path to an input's field or to the input itself names it; errors gather by input
    assert refused_inputs([value, whole, value], 2) == {1: [value, value], 0: [whole]}
    # a path that does not lead into the inputs sent names none: the owner's values are then
    # sent one by one
    for path in (
        ("ownerId",),
        ("input", "1", "value"),
        ("metafields", "2", "value"),  # past the 2 sent
        ("metafields", "-1"),
        ("metafields", "x", "value"),
    ):
        assert refused_inputs([value, user_error(*path)], 2) is None, path
    assert refused_inputs([{**user_error(), "field": None}], 2) is None


def test_refused_tag_changes_are_named_by_what_was_refused_within_the_audit_name() -> None:
    change = CustomerChange(501, add=("clv:vip",), remove=("clv:new", "clv:loyal"))
    refused = [user_error("tags")]
    assert _refused_tags(change, refused, None) == "-clv:new -clv:loyal"
    assert _refused_tags(change, [], refused) == "+clv:vip"
    assert _refused_tags(change, refused, refused) == "-clv:new -clv:loyal +clv:vip"
    # many long tags: cut to what sync_changes.name holds
    many = CustomerChange(501, add=tuple(f"clv:{'x' * 40}-{n}" for n in range(10)))
    name = _refused_tags(many, None, refused)
    assert len(name) == AUDIT_NAME_LENGTH and name.startswith(f"+clv:{'x' * 40}-0 +clv:")


def test_a_bulk_lines_errors_are_read_as_user_errors_by_their_messages() -> None:
    # a line whose mutation failed: its errors, by message (the whole error if it has none)
    failed = {"errors": [{"message": "Internal error", "path": ["metafieldsSet"]}, {"code": 1}]}
    assert _line_user_errors(failed, "metafieldsSet") == [
        {"message": "Internal error"},
        {"message": "{'code': 1}"},
    ]
    # a line answered: its user errors, none, or None when the mutation's field is missing
    refused = user_error("metafields", "0", "value")
    answered = {"data": {"metafieldsSet": {"userErrors": [refused]}}}
    assert _line_user_errors(answered, "metafieldsSet") == [refused]
    assert _line_user_errors({"data": {"metafieldsSet": {"userErrors": []}}}, "metafieldsSet") == []
    assert _line_user_errors({"data": {}}, "metafieldsSet") is None
