"""The nightly prune and the undo of a push: what an undo still needs stays through the prune
(the last value the app wrote before the audit's keep, the runs the audit names), and the
rest past its keep goes."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.context import JobContext
from jobs.shop_settings import WritebackError
from jobs.undo import check_undo, undo_plan
from plugin.store import ledger
from plugin.store.models import CustomerSync, JobRun, Refund, Shop, SyncChange
from plugin.store.retention import prune_shop
from tests.helpers import add_shop, make_settings, order_payload, refund_payload
from webhooks.payloads import parse_order, parse_refund

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 23, 3, 0, tzinfo=UTC)


def ago(days: int) -> datetime:
    return NOW - timedelta(days=days)


def add_run(session: Session, shop: Shop, job: str, days: int) -> int:
    assert shop.id is not None
    run = JobRun(
        shop_id=shop.id, job=job, worker="w", started_at=ago(days), finished_at=ago(days),
        outcome="ok",
    )  # fmt: skip
    session.add(run)
    session.flush()
    assert run.id is not None
    return run.id


def audit(
    session: Session,
    shop: Shop,
    run_id: int | None,
    days: int,
    name: str,
    action: str = "set",
    value: str | None = None,
    *,
    customer_id: int | None = 42,
    kind: str = "metafield",
    product_id: int | None = None,
) -> None:
    assert shop.id is not None
    session.add(
        SyncChange(
            shop_id=shop.id, customer_id=customer_id, product_id=product_id, kind=kind,
            name=name, action=action, value=value, reason="r", via="call", job_run_id=run_id,
            applied_at=ago(days),
        )
    )  # fmt: skip
    session.flush()  # ids in the order written, as the push writes them


def prune(engine: Engine, shop: Shop) -> dict[str, int]:
    assert shop.id is not None
    with Session(engine) as session, session.begin():
        pruned = prune_shop(session, shop.id, shop.domain, NOW)
    return {"sync_changes": pruned.sync_changes_deleted, "job_runs": pruned.job_runs_deleted}


def context(engine: Engine, http: httpx.AsyncClient) -> JobContext:
    return JobContext(engine, make_settings(), http, worker="w", clock=lambda: NOW)


async def test_prune_keeps_the_values_an_undo_of_a_recent_push_restores(engine: Engine) -> None:
    # given a customer's segment set 300 then 200 days ago, and "lost" by last week's push;
    # its p_alive set 250 days ago and deleted 190 days ago, then set again last week
    shop = add_shop(engine)
    with Session(engine) as session, session.begin():
        oldest = add_run(session, shop, "push", 300)
        older = add_run(session, shop, "push", 250)
        old = add_run(session, shop, "push", 200)
        audit(session, shop, oldest, 300, "segment", value="new")
        audit(session, shop, older, 250, "p_alive", value="0.9")
        audit(session, shop, old, 200, "segment", value="loyal")
        audit(session, shop, old, 190, "p_alive", "delete")
        recent = add_run(session, shop, "push", 7)
        audit(session, shop, recent, 7, "segment", value="lost")
        audit(session, shop, recent, 7, "p_alive", value="0.1")
        assert shop.id is not None
        held = json.dumps({"segment": "lost", "p_alive": "0.1"})
        session.add(CustomerSync(shop_id=shop.id, customer_id=42, tags="[]", metafields=held))
    async with httpx.AsyncClient() as http:
        ctx = context(engine, http)
        before, _ = undo_plan(ctx, shop, recent)
        # when the nightly prune runs
        assert prune(engine, shop) == {"sync_changes": 2, "job_runs": 3}
        after, _ = undo_plan(ctx, shop, recent)
    # then the undo of last week's push still restores "loyal" and deletes p_alive, as before
    [item] = after.items
    assert (item.change.set_metafields, item.change.delete_metafields) == (
        (("segment", "loyal"),),
        ("p_alive",),
    )
    assert [i.change for i in before.items] == [item.change]
    # and of the old rows only the last value of each key is left
    with Session(engine) as session:
        left = session.exec(select(SyncChange.name, SyncChange.action, SyncChange.value))
        assert sorted(left, key=str) == sorted(
            [
                ("segment", "set", "loyal"),
                ("p_alive", "delete", None),
                ("segment", "set", "lost"),
                ("p_alive", "set", "0.1"),
            ],
            key=str,
        )


async def test_prune_keeps_a_value_a_read_found_after_the_apps_last_write(
    engine: Engine,
) -> None:
    # given a customer's segment set 300 days ago, found edited by a read 200 days ago, and set
    # to "lost" by last week's push
    shop = add_shop(engine)
    with Session(engine) as session, session.begin():
        old = add_run(session, shop, "push", 300)
        audit(session, shop, old, 300, "segment", value="new")
        read = add_run(session, shop, "reconcile", 200)
        audit(session, shop, read, 200, "segment", "found", "edited")
        recent = add_run(session, shop, "push", 7)
        audit(session, shop, recent, 7, "segment", value="lost")
        assert shop.id is not None
        held = json.dumps({"segment": "lost"})
        session.add(CustomerSync(shop_id=shop.id, customer_id=42, tags="[]", metafields=held))
    # when the nightly prune runs
    assert prune(engine, shop) == {"sync_changes": 1, "job_runs": 2}
    # then the undo of last week's push puts back the value the read found
    async with httpx.AsyncClient() as http:
        plan, _ = undo_plan(context(engine, http), shop, recent)
    [item] = plan.items
    assert item.change.set_metafields == (("segment", "edited"),)


def test_prune_deletes_old_rows_no_undo_reads(engine: Engine) -> None:
    # given rows 200 days old: a tag added, a refused value, a product's metafield, and a
    # customer's value written twice; and another customer's value written once
    shop = add_shop(engine)
    with Session(engine) as session, session.begin():
        run = add_run(session, shop, "push", 200)
        audit(session, shop, run, 200, "clv:vip", "add", kind="tag")
        audit(session, shop, run, 200, "segment", "refused", "x")
        audit(session, shop, run, 200, "fbt", value="[1]", customer_id=None, product_id=9)
        audit(session, shop, run, 200, "segment", value="new")
        audit(session, shop, run, 199, "segment", value="loyal")
        audit(session, shop, run, 200, "segment", value="lost", customer_id=43)
    # when the prune runs
    assert prune(engine, shop) == {"sync_changes": 4, "job_runs": 1}
    # then each customer's last value is all that is left
    with Session(engine) as session:
        left = set(session.exec(select(SyncChange.customer_id, SyncChange.value)))
    assert left == {(42, "loyal"), (43, "lost")}


def test_prune_keeps_the_last_value_written_before_a_later_refusal(engine: Engine) -> None:
    # given a customer's segment set 200 days ago, and a new value refused 190 days ago
    shop = add_shop(engine)
    with Session(engine) as session, session.begin():
        run = add_run(session, shop, "push", 200)
        audit(session, shop, run, 200, "segment", value="loyal")
        audit(session, shop, run, 190, "segment", "refused", "lost")
    # when the prune runs, then the refusal goes and the value the store holds stays
    assert prune(engine, shop)["sync_changes"] == 1
    with Session(engine) as session:
        left = list(session.exec(select(SyncChange.action, SyncChange.value)))
    assert left == [("set", "loyal")]


async def test_a_push_can_be_undone_as_long_as_its_audit_is_kept(engine: Engine) -> None:
    # given push runs 120 and 200 days old with their audit, and a push and a refit 120 days
    # old that changed nothing in the store
    shop = add_shop(engine)
    with Session(engine) as session, session.begin():
        kept, gone = add_run(session, shop, "push", 120), add_run(session, shop, "push", 200)
        audit(session, shop, kept, 120, "segment", value="loyal")
        audit(session, shop, gone, 200, "clv:vip", "add", kind="tag")
        add_run(session, shop, "push", 120)
        add_run(session, shop, "refit", 120)
    # when the prune runs
    assert prune(engine, shop) == {"sync_changes": 1, "job_runs": 3}
    # then the 120-day-old push, whose audit is kept, is kept, and can be undone
    with Session(engine) as session:
        assert list(session.exec(select(JobRun.id))) == [kept]
    paused = shop.model_copy(update={"settings": json.dumps({"dry_run": True})})
    async with httpx.AsyncClient() as http:
        check_undo(context(engine, http), paused, kept)
        # and the one past the audit's keep is refused, saying how long runs can be undone
        with pytest.raises(WritebackError, match=f"has no job run {gone} .*180 days"):
            check_undo(context(engine, http), paused, gone)


def test_prune_deletes_refunds_whose_order_never_came_after_30_days(engine: Engine) -> None:
    # given refunds of a test order (never part of the ledger) and of an order that never came,
    # both 36 days old; a refund of a stored order as old; and a refund 26 days old still
    # waiting for its order
    shop = add_shop(engine)
    shop_id, domain = shop.id, shop.domain
    assert shop_id is not None
    with Session(engine) as session, session.begin():
        assert not ledger.apply_order(session, shop, parse_order(order_payload(1, test=True)))
        assert ledger.apply_order(session, shop, parse_order(order_payload(2)))
        for refund_id, order_id, day in ((11, 1, 290), (31, 3, 290), (21, 2, 290), (41, 4, 300)):
            payload = refund_payload(refund_id, order_id, "5.00", day=day)
            assert ledger.apply_refund(session, shop, parse_refund(payload))
    # when the nightly prune runs
    with Session(engine) as session, session.begin():
        pruned = prune_shop(session, shop_id, domain, NOW)
    # then the two orphans past 30 days are gone, and the others kept
    assert pruned.orphan_refunds_deleted == 2
    with Session(engine) as session:
        assert sorted(session.exec(select(Refund.refund_id)).all()) == [21, 41]
