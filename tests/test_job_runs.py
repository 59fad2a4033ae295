"""run_job on a real database: runs recorded with outcome and counts, failures kept in, leases."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import anyio
import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session, select

from jobs.context import JobContext, utcnow
from jobs.runs import FAILED, OK, RUNNING, SKIPPED, lease_name, run_job
from plugin.store.models import JobLease, JobRun, Shop
from tests.helpers import SHOP, T0, add_shop, make_settings, score_row

pytestmark = pytest.mark.anyio

NOW = T0 + timedelta(days=30)


def context(
    engine: Engine,
    http: httpx.AsyncClient,
    worker: str = "worker-a",
    clock: Callable[[], datetime] = lambda: NOW,
) -> JobContext:
    return JobContext(engine, make_settings(), http, worker=worker, clock=clock)


def runs_of(engine: Engine, job: str | None = None) -> list[JobRun]:
    with Session(engine) as session:
        query = select(JobRun).order_by(JobRun.id)  # type: ignore[arg-type]
        if job is not None:
            query = query.where(JobRun.job == job)
        return list(session.exec(query))


def leases_of(engine: Engine) -> list[JobLease]:
    with Session(engine) as session:
        return list(session.exec(select(JobLease)))


def hold_lease(engine: Engine, shop: Shop, job: str, holder: str, until: datetime) -> None:
    assert shop.id is not None
    with Session(engine) as session, session.begin():
        lease = JobLease(shop_id=shop.id, job=lease_name(job), holder=holder, expires_at=until)
        session.add(lease)


async def counting(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
    return {"customers": 3, "shop": shop.domain}


async def test_run_job_ok_records_worker_times_outcome_and_counts(engine: Engine) -> None:
    # given a shop and a job that looks at its own run and lease while it runs
    shop = add_shop(engine)
    assert shop.id is not None
    seen: dict[str, Any] = {}

    async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        seen["runs"] = [(r.id, r.outcome) for r in runs_of(engine)]
        seen["leases"] = [(lease.job, lease.holder) for lease in leases_of(engine)]
        return {"pushed": 3, "unchanged": 7}

    # when it is run
    async with httpx.AsyncClient() as http:
        result = await run_job(context(engine, http), shop.id, "push", job)
    # then it ran under its lease, as a run "running" then "ok", with its counts
    assert result.outcome == OK and result.counts == {"pushed": 3, "unchanged": 7}
    assert seen == {"runs": [(result.run_id, RUNNING)], "leases": [("writeback", "worker-a")]}
    [run] = runs_of(engine)
    assert (run.id, run.shop_id, run.job, run.worker, run.outcome) == (
        result.run_id,
        shop.id,
        "push",
        "worker-a",
        OK,
    )
    assert (run.started_at, run.finished_at, run.error) == (NOW, NOW, None)
    assert json.loads(run.counts) == {"pushed": 3, "unchanged": 7}
    # and the lease is released
    assert leases_of(engine) == []


async def test_run_job_failure_is_recorded_and_logged_not_raised(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # given a job that fails, with a token in its message
    shop = add_shop(engine)
    assert shop.id is not None

    async def broken(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        raise ValueError("Shopify said no to shpat_0123abcd")

    # when it is run
    async with httpx.AsyncClient() as http:
        result = await run_job(context(engine, http), shop.id, "push", broken)
    # then the run is recorded as failed with the exception's type and message, token blanked
    assert (result.outcome, result.error) == (FAILED, "ValueError: Shopify said no to [token]")
    [run] = runs_of(engine)
    assert (run.outcome, run.error, run.finished_at) == (FAILED, result.error, NOW)
    assert leases_of(engine) == []
    # and the log names the job and the shop, never the token
    assert f"push for {SHOP} failed" in caplog.text and "shpat_" not in caplog.text


async def test_run_job_failing_shop_does_not_stop_another_shops_run(engine: Engine) -> None:
    # given two shops, the first of which breaks the job
    broken_shop = add_shop(engine, "broken.myshopify.com")
    good_shop = add_shop(engine, "good.myshopify.com")

    async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        if shop.domain == "broken.myshopify.com":
            raise RuntimeError("a bug")
        await anyio.sleep(0.05)  # still running when the other shop's run fails
        return {"done": 1}

    # when both run at once, as the scheduler runs them
    async with httpx.AsyncClient() as http, anyio.create_task_group() as tasks:
        for shop in (broken_shop, good_shop):
            assert shop.id is not None
            tasks.start_soon(run_job, context(engine, http), shop.id, "rescore", job)
    # then the failure is recorded for its shop and the other shop's run finishes
    outcomes = {(r.shop_id, r.outcome, r.counts) for r in runs_of(engine)}
    assert outcomes == {(broken_shop.id, FAILED, "{}"), (good_shop.id, OK, '{"done": 1}')}


async def test_run_job_lease_held_by_another_worker_skips_unrecorded(engine: Engine) -> None:
    # given another worker holding the shop's push lease for an hour more
    shop = add_shop(engine)
    assert shop.id is not None
    hold_lease(engine, shop, "push", "worker-b", NOW + timedelta(hours=1))
    called: list[int | None] = []

    async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        called.append(run_id)
        return {}

    # when this worker runs the push
    async with httpx.AsyncClient() as http:
        result = await run_job(context(engine, http), shop.id, "push", job)
    # then it is skipped, says who holds it, records nothing, and leaves the lease alone
    assert (result.outcome, result.run_id, called) == (SKIPPED, None, [])
    assert result.error is not None and "worker-b" in result.error
    assert runs_of(engine) == []
    assert [(lease.holder, lease.expires_at) for lease in leases_of(engine)] == [
        ("worker-b", NOW + timedelta(hours=1))
    ]
    # and another job of the same shop is not held up by it
    async with httpx.AsyncClient() as http:
        other = await run_job(context(engine, http), shop.id, "rescore", counting)
    assert other.outcome == OK


@pytest.mark.parametrize(("held", "wanted"), [("push", "reconcile"), ("refit", "rescore")])
async def test_run_job_jobs_writing_the_same_state_never_overlap(
    engine: Engine, held: str, wanted: str
) -> None:
    # given another worker running one of two jobs that write the same state (the pushed
    # state; the scores)
    shop = add_shop(engine)
    assert shop.id is not None
    hold_lease(engine, shop, held, "worker-b", NOW + timedelta(hours=1))
    # when this worker runs the other one
    async with httpx.AsyncClient() as http:
        result = await run_job(context(engine, http), shop.id, wanted, counting)
    # then it waits its turn: skipped
    assert result.outcome == SKIPPED and result.error is not None and "worker-b" in result.error


async def test_run_job_expired_lease_is_taken_over(engine: Engine) -> None:
    # given a lease left behind by a worker that died mid-run, expired a second ago
    shop = add_shop(engine)
    assert shop.id is not None
    hold_lease(engine, shop, "push", "worker-b", NOW - timedelta(seconds=1))
    with Session(engine) as session, session.begin():
        started = NOW - timedelta(minutes=20)
        session.add(JobRun(shop_id=shop.id, job="push", worker="worker-b", started_at=started))
    holders: list[str] = []

    async def job(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        holders.extend(lease.holder for lease in leases_of(engine))
        return {}

    # when this worker runs the push
    async with httpx.AsyncClient() as http:
        result = await run_job(context(engine, http), shop.id, "push", job)
    # then it took the lease over, ran, and released it
    assert result.outcome == OK and holders == ["worker-a"]
    assert leases_of(engine) == []
    # and the dead worker's run no longer claims to be running
    abandoned, taken_over = runs_of(engine)
    assert (abandoned.worker, abandoned.outcome, abandoned.finished_at) == ("worker-b", FAILED, NOW)
    assert abandoned.error == "Abandoned: its worker stopped before the job finished"
    assert (taken_over.worker, taken_over.outcome) == ("worker-a", OK)


async def test_run_job_while_another_worker_runs_it_skips(engine: Engine) -> None:
    # given worker A in the middle of the shop's refit
    shop = add_shop(engine)
    assert shop.id is not None
    started, release = anyio.Event(), anyio.Event()

    async def slow(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        started.set()
        await release.wait()
        return {"scored": 1}

    results: dict[str, Any] = {}

    async def run_as(worker: str, http: httpx.AsyncClient) -> None:
        assert shop.id is not None
        results[worker] = await run_job(context(engine, http, worker), shop.id, "refit", slow)

    with anyio.fail_after(5):  # were B to run it too, it would wait for A's release for ever
        async with httpx.AsyncClient() as http, anyio.create_task_group() as tasks:
            tasks.start_soon(run_as, "worker-a", http)
            await started.wait()
            # when worker B fires the same job meanwhile
            await run_as("worker-b", http)
            release.set()
    # then B skipped it, naming A, and only A's run is recorded
    assert results["worker-b"].outcome == SKIPPED and "worker-a" in results["worker-b"].error
    assert results["worker-a"].outcome == OK
    assert [(r.worker, r.outcome) for r in runs_of(engine)] == [("worker-a", OK)]


async def test_run_job_renews_its_lease_while_it_runs(engine: Engine) -> None:
    # given a job that outlasts its lease length several times
    shop = add_shop(engine)
    assert shop.id is not None
    expiries: list[datetime] = []

    async def long(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        for _ in range(3):
            expiries.extend(lease.expires_at for lease in leases_of(engine))
            await anyio.sleep(0.2)
        return {}

    # when it runs with a 0.3 s lease (renewed every 0.1 s) on the real clock
    async with httpx.AsyncClient() as http:
        ctx = context(engine, http, clock=utcnow)
        result = await run_job(ctx, shop.id, "refit", long, lease_seconds=0.3)
    # then the lease was pushed forward while it ran, so it never lapsed
    assert result.outcome == OK and len(expiries) == 3
    assert expiries[0] < expiries[1] < expiries[2]


async def test_run_job_cancelled_records_failed_and_releases_the_lease(engine: Engine) -> None:
    # given a job in progress
    shop = add_shop(engine)
    assert shop.id is not None
    started = anyio.Event()

    async def endless(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
        started.set()
        await anyio.sleep_forever()
        return {}

    # when the process shuts down (its task is cancelled)
    async with httpx.AsyncClient() as http, anyio.create_task_group() as tasks:
        tasks.start_soon(run_job, context(engine, http), shop.id, "push", endless)
        with anyio.fail_after(5):
            await started.wait()
        tasks.cancel_scope.cancel()
    # then the run is recorded as failed by the cancellation, and the lease is free
    [run] = runs_of(engine)
    assert run.outcome == FAILED and run.error is not None and run.error.startswith("Cancelled")
    assert leases_of(engine) == []


async def test_run_job_for_a_tick_a_run_since_served_is_skipped(engine: Engine) -> None:
    # given a refit tick at NOW - 1 h, and a refit begun after it that ended ok, and (for
    # another shop) one that began before it
    shop, other = add_shop(engine), add_shop(engine, "other.myshopify.com")
    assert shop.id is not None and other.id is not None
    tick = NOW - timedelta(hours=1)
    with Session(engine) as session, session.begin():
        for which, started in ((shop, tick + timedelta(minutes=1)), (other, tick)):
            assert which.id is not None
            session.add(
                JobRun(shop_id=which.id, job="refit", worker="worker-b", started_at=started,
                       finished_at=started + timedelta(minutes=5), outcome=OK)
            )  # fmt: skip
        session.flush()
        served = session.exec(select(JobRun.id).where(JobRun.shop_id == shop.id)).one()
    # when this worker runs the refit for that tick in each shop
    async with httpx.AsyncClient() as http:
        skipped = await run_job(context(engine, http), shop.id, "refit", counting, due_at=tick)
        again = await run_job(
            context(engine, http), other.id, "refit", counting, due_at=tick + timedelta(seconds=1)
        )
    # then the served one is skipped, unrecorded, and not as waiting for a lease
    assert (skipped.outcome, skipped.run_id, skipped.lease_held) == (SKIPPED, None, False)
    assert skipped.error == f"its tick was served by run {served}"
    assert leases_of(engine) == []
    # and the other, begun before its tick, served nothing: it runs
    assert again.outcome == OK
    assert len(runs_of(engine, "refit")) == 3


async def test_run_job_unknown_shop_fails_without_a_record(engine: Engine) -> None:
    async with httpx.AsyncClient() as http:
        result = await run_job(context(engine, http), 999, "push", counting)
    assert (result.outcome, result.run_id, result.error) == (FAILED, None, "no shop with id 999")
    assert runs_of(engine) == []


async def test_prune_job_deletes_only_the_shops_old_processed_events(engine: Engine) -> None:
    # given processed events 20, 14 (the keep exactly) and 2 days old, an old pending and an
    # old parked one, and another shop's old one
    from jobs.scheduler import prune
    from plugin.store.models import DONE, PARKED, PENDING, InboxEvent

    shop = add_shop(engine)
    add_shop(engine, "other.myshopify.com")
    assert shop.id is not None

    def event(domain: str, webhook_id: str, days_old: int, status: str) -> InboxEvent:
        at = NOW - timedelta(days=days_old)
        return InboxEvent(
            shop_domain=domain,
            webhook_id=webhook_id,
            topic="orders/create",
            received_at=at,
            payload="",
            status=status,
            next_attempt_at=at,
        )

    with Session(engine) as session, session.begin():
        session.add_all(
            [
                event(SHOP, "old-done", 20, DONE),
                event(SHOP, "kept-done", 14, DONE),
                event(SHOP, "new-done", 2, DONE),
                event(SHOP, "old-pending", 20, PENDING),
                event(SHOP, "old-parked", 20, PARKED),
                event("other.myshopify.com", "other-old-done", 20, DONE),
            ]
        )
    # when the shop's prune job runs
    async with httpx.AsyncClient() as http:
        result = await run_job(context(engine, http), shop.id, "prune", prune)
    # then only its old processed event is gone
    assert result.outcome == OK and result.counts["inbox_events_deleted"] == 1
    with Session(engine) as session:
        left = set(session.exec(select(InboxEvent.webhook_id)))
    assert left == {"kept-done", "new-done", "old-pending", "old-parked", "other-old-done"}


async def test_prune_job_keeps_audit_runs_and_the_model_runs_still_in_use(engine: Engine) -> None:
    # given a shop's audit rows 200 and 10 days old, job runs finished 100 and 10 days ago and
    # one marked running for 100 days, and model runs: two old full ones (the older superseded),
    # two old re-scores (one still behind a customer's score) and a recent one; and another
    # shop's old audit row
    from jobs.scheduler import prune
    from plugin.store.models import ModelRun, SyncChange

    shop = add_shop(engine)
    other = add_shop(engine, "other.myshopify.com")
    assert shop.id is not None and other.id is not None

    def ago(days: int) -> datetime:
        return NOW - timedelta(days=days)

    def change(shop_id: int, name: str, days: int) -> SyncChange:
        return SyncChange(
            shop_id=shop_id, customer_id=1, kind="tag", name=name, action="add", via="call",
            applied_at=ago(days),
        )  # fmt: skip

    def job_run(job: str, days: int, finished: bool) -> JobRun:
        assert shop.id is not None
        end = ago(days) + timedelta(minutes=1) if finished else None
        return JobRun(shop_id=shop.id, job=job, worker="w", started_at=ago(days), finished_at=end)

    def model_run(kind: str, days: int) -> ModelRun:
        assert shop.id is not None
        return ModelRun(
            shop_id=shop.id, kind=kind, started_at=ago(days), seconds=1.0, as_of=ago(days),
            repeat_model="bgnbd", repeat_params="{}", confidence="fitted",
        )  # fmt: skip

    with Session(engine) as session, session.begin():
        session.add_all(
            [
                change(shop.id, "clv:old", 200),
                change(shop.id, "clv:recent", 10),
                change(other.id, "clv:other-old", 200),
                job_run("push-old", 100, True),
                job_run("refit-stuck", 100, False),
                job_run("push-recent", 10, True),
            ]
        )
        runs = {
            name: model_run(kind, days)
            for name, kind, days in [
                ("superseded", "full", 120),
                ("latest-full", "full", 100),
                ("rescore-in-use", "rescore", 100),
                ("rescore-old", "rescore", 100),
                ("rescore-recent", "rescore", 5),
            ]
        }
        for run in runs.values():
            session.add(run)
            session.flush()
        in_use = runs["rescore-in-use"].id
        assert in_use is not None
        session.add(score_row(shop.id, customer_id=1, run_id=in_use))
        kept_ids = {name: run.id for name, run in runs.items()}
    # when the shop's prune job runs
    async with httpx.AsyncClient() as http:
        result = await run_job(context(engine, http), shop.id, "prune", prune)
    # then what is past its keep is gone, and the rest stays
    assert result.outcome == OK
    assert result.counts == {
        "inbox_events_deleted": 0,
        "sync_changes_deleted": 1,
        "job_runs_deleted": 1,
        "model_runs_deleted": 2,
        "orphan_refunds_deleted": 0,
    }
    with Session(engine) as session:
        changes = set(session.exec(select(SyncChange.name)))
        jobs = set(session.exec(select(JobRun.job)))
        models = set(session.exec(select(ModelRun.id)))
    assert changes == {"clv:recent", "clv:other-old"}
    assert jobs == {"refit-stuck", "push-recent", "prune"}
    assert models == {
        kept_ids[name] for name in ("latest-full", "rescore-in-use", "rescore-recent")
    }
