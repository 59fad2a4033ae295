"""The undo of a push sends nothing to a customer deleted in the store since, as the push does:
their pushed state went with them, so every change of the run would look still in place."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from jobs.undo import undo_plan
from plugin.store.ledger import mark_customer_deleted
from plugin.store.models import CustomerSync
from tests.helpers import add_shop
from tests.test_retention_undo import add_run, ago, audit, context

pytestmark = pytest.mark.anyio

DELETED, ALIVE = 42, 43


async def test_undo_plans_nothing_for_a_customer_deleted_since_the_push(engine: Engine) -> None:
    # given a push that took a tag and a value off two customers who had them from an earlier one
    shop = add_shop(engine)
    assert shop.id is not None
    with Session(engine) as session, session.begin():
        old = add_run(session, shop, "push", 20)
        run = add_run(session, shop, "push", 7)
        for customer in (DELETED, ALIVE):
            audit(session, shop, old, 20, "segment", value="loyal", customer_id=customer)
            audit(session, shop, old, 20, "clv:at-risk", "add", kind="tag", customer_id=customer)
        for customer in (DELETED, ALIVE):
            audit(session, shop, run, 7, "segment", "delete", customer_id=customer)
            audit(session, shop, run, 7, "clv:at-risk", "remove", kind="tag", customer_id=customer)
            held = CustomerSync(shop_id=shop.id, customer_id=customer, tags="[]", metafields="{}")
            session.add(held)
    # and one of them deleted in the store since
    with Session(engine) as session, session.begin():
        mark_customer_deleted(session, shop.id, DELETED, ago(1))
    # when the push's undo is planned
    async with httpx.AsyncClient() as http:
        plan, superseded = undo_plan(context(engine, http), shop, run)
    # then it puts back the tag and the value of the other only
    assert superseded == 0
    [item] = plan.items
    assert item.change.customer_id == ALIVE
    assert (item.change.add, item.change.set_metafields) == (
        ("clv:at-risk",),
        (("segment", "loyal"),),
    )
