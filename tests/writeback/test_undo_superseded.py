"""Undoing a push leaves what a later change touched again, even when that change put back what
the undone run had left (added, removed, added back): against the live dev store, and the audit
query on its own, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import httpx
import pytest
from sqlalchemy import Engine, func
from sqlmodel import Session, select

from jobs.runs import OK
from jobs.undo import touched_later
from plugin.domain.undo import RunChange, undo_change
from plugin.store.models import CustomerScore, SyncChange
from tests.helpers import T0, add_shop
from tests.writeback.conftest import Scenario, ScenarioFactory
from tests.writeback.test_undo import push, undo

Held = tuple[list[str], dict[str, str]]


def rescore(scenario: Scenario, customer_id: int, tags: str, segment: str) -> None:
    with Session(scenario.engine) as session, session.begin():
        score = session.get(CustomerScore, (scenario.shop.id, customer_id))
        assert score is not None
        score.tags, score.segment = tags, segment


def held(scenario: Scenario) -> dict[int, Held]:
    values = scenario.store_metafields()
    return {c: (sorted(tags), values[c]) for c, tags in scenario.store_tags().items()}


def run_changes(scenario: Scenario, run_id: int, customer_id: int) -> int:
    with Session(scenario.engine) as session:
        query = select(func.count()).where(
            SyncChange.job_run_id == run_id, SyncChange.customer_id == customer_id
        )
        return session.exec(query).one()


@pytest.mark.anyio
async def test_undo_run_tags_and_value_put_back_by_later_runs_are_left_alone(
    scenario_factory: ScenarioFactory, http: httpx.AsyncClient
) -> None:
    # given a push, then one customer's tags taken off and segment changed by a second push
    # and put back by a third, so the store again holds what the first push left
    scenario = scenario_factory()
    before = held(scenario)
    customer_id = next(c for c, tags in scenario.desired().items() if tags)
    with Session(scenario.engine) as session:
        score = session.get(CustomerScore, (scenario.shop.id, customer_id))
        assert score is not None
        tags, segment = score.tags, score.segment
    first = await push(scenario, http)
    rescore(scenario, customer_id, "", "lost")
    await push(scenario, http)
    rescore(scenario, customer_id, tags, segment)
    await push(scenario, http)
    after_third = held(scenario)
    scenario.set_shop_settings(dry_run=True)
    # when the first push is undone
    result = await undo(scenario, http, first)
    # then that customer keeps the third push's tags and segment, and every one of the first
    # push's changes to the customer is counted as superseded, or is taken back (the values
    # the later pushes never touched)
    assert result.outcome == OK, result.error
    now = held(scenario)
    assert now[customer_id][0] == after_third[customer_id][0] != before[customer_id][0]
    assert now[customer_id][1]["segment"] == after_third[customer_id][1]["segment"] == segment
    assert set(now[customer_id][1]) == {"segment"}
    touched = len(after_third[customer_id][0]) - len(before[customer_id][0]) + 1  # and segment
    assert result.counts["superseded"] == touched
    assert run_changes(scenario, first, customer_id) > touched
    # and every other customer is back where the first push found them
    assert {c: h for c, h in now.items() if c != customer_id} == {
        c: h for c, h in before.items() if c != customer_id
    }


def audit(engine: Engine, shop_id: int, rows: list[tuple[int, str, str, str, int | None]]) -> None:
    """Audit rows (customer, kind, name, action, job run), applied in this order."""
    with Session(engine) as session, session.begin():
        for n, (customer_id, kind, name, action, run_id) in enumerate(rows):
            session.add(
                SyncChange(
                    shop_id=shop_id,
                    customer_id=customer_id,
                    kind=kind,
                    name=name,
                    action=action,
                    value="v" if action == "set" else None,
                    via="call",
                    job_run_id=run_id,
                    applied_at=T0 + timedelta(seconds=n),
                )
            )
            session.flush()  # ids in the order given


def test_touched_later_names_only_applied_changes_after_the_runs_own(engine: Engine) -> None:
    # given run 2's changes, with changes before and after it: other runs', one outside any
    # run, a refusal, other customers' and another shop's
    shop = add_shop(engine, "one.myshopify.com")
    other = add_shop(engine, "two.myshopify.com")
    assert shop.id is not None and other.id is not None
    audit(
        engine,
        shop.id,
        [
            (1, "tag", "clv:vip", "add", 1),  # before the run: no matter
            (1, "tag", "clv:vip", "remove", 2),
            (1, "tag", "clv:new", "add", 2),
            (1, "metafield", "segment", "set", 2),
            (1, "metafield", "p_alive", "set", 2),
            (2, "tag", "clv:vip", "add", 2),
            (2, "metafield", "segment", "delete", 2),
            (1, "tag", "clv:vip", "add", 3),  # a later run
            (1, "metafield", "segment", "delete", None),  # a change outside any run
            (1, "tag", "clv:new", "refused", 4),  # refused: the store kept the run's
            (2, "tag", "clv:other", "remove", 3),  # a name the run did not touch
        ],
    )
    audit(engine, other.id, [(2, "metafield", "segment", "set", 5)])  # another shop
    # when the run's later-touched changes are read
    later = touched_later(engine, shop.id, 2, [1, 2, 3])
    # then only the same customer's same tag or key, changed after the run, is named
    assert later == {1: frozenset({("tag", "clv:vip"), ("metafield", "segment")})}


def test_undo_change_leaves_what_a_later_change_touched_whatever_the_store_holds() -> None:
    run = [
        RunChange("tag", "clv:vip", "add"),  # removed and added back since
        RunChange("tag", "clv:new", "remove"),
        RunChange("metafield", "segment", "set", "champions"),  # set to another and back
        RunChange("metafield", "p_alive", "set", "0.90"),
    ]
    before = {"segment": "loyal", "p_alive": "0.50"}
    pushed_values = {"segment": "champions", "p_alive": "0.90"}
    later = frozenset({("tag", "clv:vip"), ("metafield", "segment")})
    undo = undo_change(7, run, before, frozenset({"clv:vip"}), pushed_values, "undo", later=later)
    assert undo.change is not None and undo.superseded == 2
    assert (undo.change.add, undo.change.remove) == (("clv:new",), ())
    assert undo.change.set_metafields == (("p_alive", "0.50"),)
    assert undo.change.delete_metafields == ()
