"""The processes that run the jobs: the app's lifespan, `clvsync worker`, and `clvsync jobs`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session

from jobs.context import JobContext
from jobs.runs import FAILED, OK
from jobs.scheduler import JobSpec
from plugin.app import create_app, run_worker
from plugin.cli import main
from plugin.store.models import ModelRun, Shop
from tests.helpers import SHOP, add_shop, make_settings
from tests.test_compliance import cli_env
from tests.test_job_runs import hold_lease, runs_of
from tests.test_recompute import load_store
from tests.test_scheduler import eventually

ROOT = Path(__file__).resolve().parent.parent


async def tick(ctx: JobContext, shop: Shop, run_id: int | None) -> Mapping[str, Any]:
    return {"ticks": 1}


QUICK_JOBS = (JobSpec("tick", tick, every=timedelta(milliseconds=50)),)


def cli(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=cli_env(url))
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.anyio
async def test_create_app_lifespan_runs_jobs_and_stops_them_with_the_http_client(
    engine: Engine,
) -> None:
    # given an app with a quick job, and a shop
    add_shop(engine)
    app = create_app(make_settings(), engine=engine, run_processor=False, jobs=QUICK_JOBS)
    # when the app runs
    async with app.router.lifespan_context(app):
        scheduler, http = app.state.scheduler, app.state.http
        # then the scheduler runs the job, with the shared HTTP client open
        assert scheduler.running and not http.is_closed
        await eventually(lambda: any(r.outcome == OK for r in runs_of(engine)))
    # and when the app stops, so does the scheduler, and the client is closed
    assert not scheduler.running and http.is_closed


@pytest.mark.anyio
async def test_create_app_without_jobs_starts_no_scheduler(engine: Engine) -> None:
    # given an app told not to run jobs, and a shop the quick job would run for
    add_shop(engine)
    app = create_app(
        make_settings(), engine=engine, run_processor=False, run_jobs=False, jobs=QUICK_JOBS
    )
    # when the app runs for several of the job's intervals
    async with app.router.lifespan_context(app):
        assert app.state.scheduler is None
        await anyio.sleep(0.3)
    # then no job ran
    assert runs_of(engine) == []


@pytest.mark.anyio
async def test_app_startup_moves_the_startup_objects_out_of_the_collectors_reach(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a process whose objects are all within the collector's reach
    import gc

    import plugin.app

    gc.unfreeze()
    monkeypatch.setattr(plugin.app, "_frozen", False)
    assert gc.get_freeze_count() == 0
    # when an app starts
    app = create_app(make_settings(), engine=engine, run_processor=False, run_jobs=False)
    async with app.router.lifespan_context(app):
        # then what existed by then is frozen out of full collections, once per process
        frozen = gc.get_freeze_count()
        assert frozen > 0
    objects_since = [[n] for n in range(1000)]  # lists: tracked by the collector
    async with app.router.lifespan_context(app):
        assert gc.get_freeze_count() <= frozen  # not again: what came since stays collectable
    assert len(objects_since) == 1000


@pytest.mark.anyio
async def test_run_worker_runs_jobs_until_stopped(engine: Engine) -> None:
    # given a worker with a quick job, and a shop
    add_shop(engine)
    stop = anyio.Event()
    async with anyio.create_task_group() as tasks:
        running = await tasks.start(
            lambda task_status: run_worker(
                make_settings(), engine, stop=stop, jobs=QUICK_JOBS, task_status=task_status
            )
        )
        # when it has run the job, and is stopped
        await eventually(lambda: any(r.outcome == OK for r in runs_of(engine)))
        stop.set()
    # then it stopped its scheduler and closed its HTTP client
    assert not running.scheduler.running and running.http.is_closed


def test_worker_command_stops_cleanly_on_sigterm(sqlite_path: Path) -> None:
    # given `clvsync worker` running on a fresh database
    env = {**os.environ, **cli_env(f"sqlite:///{sqlite_path}"), "CLVSYNC_LOG_LEVEL": "INFO"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "plugin.cli", "worker"],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert worker.stderr is not None
        deadline = time.monotonic() + 60
        lines: list[str] = []
        while not any("worker started" in line for line in lines):
            assert time.monotonic() < deadline and worker.poll() is None, "".join(lines)
            lines.append(worker.stderr.readline())
        # when it is sent SIGTERM
        worker.send_signal(signal.SIGTERM)
        _, rest = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    # then it stops its scheduler and exits cleanly
    assert worker.returncode == 0, rest
    assert "SIGTERM received" in rest and "scheduler stopped" in rest and "worker stopped" in rest


def test_cli_jobs_run_rescore_records_a_run_and_prints_its_counts(
    engine: Engine, migrated_url: str
) -> None:
    # given a shop with a history and no scores yet
    store, shop, _ = load_store(engine, 60, 3)
    # when its rescore is run by hand
    code, out, err = cli(migrated_url, "jobs", "run", "rescore", "--shop", store.shop_domain)
    # then it ran (a full run first, there being none) and printed the counts
    assert code == 0, err
    counts = json.loads(out)
    with Session(engine) as session:
        model_run = session.get(ModelRun, counts["model_run_id"])
    assert model_run is not None and model_run.kind == counts["kind"] == "full"
    assert counts["customers_scored"] == model_run.scored > 0
    # and the run is recorded like a scheduled one
    [run] = runs_of(engine)
    assert (run.shop_id, run.job, run.outcome) == (shop.id, "rescore", OK)
    assert json.loads(run.counts) == counts
    # and listed
    code, out, _ = cli(migrated_url, "jobs", "runs", "--shop", store.shop_domain)
    assert code == 0 and f"rescore    {store.shop_domain}" in out and " ok " in out


def test_cli_jobs_runs_for_a_shop_lists_only_that_shops_runs(
    engine: Engine, migrated_url: str
) -> None:
    # given a prune run for each of two shops
    other = "other-shop.myshopify.com"
    for domain in (SHOP, other):
        add_shop(engine, domain)
        code, _, err = cli(migrated_url, "jobs", "run", "prune", "--shop", domain)
        assert code == 0, err
    # when one shop's runs are listed, then only its run is
    code, out, _ = cli(migrated_url, "jobs", "runs", "--shop", other)
    [heading, line] = out.splitlines()
    assert code == 0 and heading.split()[:3] == ["id", "job", "shop"]
    assert f"prune      {other}" in line


def test_cli_jobs_run_failure_exits_1_with_the_error_and_is_recorded(
    engine: Engine, migrated_url: str
) -> None:
    # given a shop whose scoring settings name a threshold that does not exist
    shop = add_shop(engine)
    with Session(engine) as session, session.begin():
        stored = session.get(Shop, shop.id)
        assert stored is not None
        stored.settings = json.dumps({"scoring": {"no_such_threshold": 1}})
    # when its refit is run by hand
    code, _, err = cli(migrated_url, "jobs", "run", "refit", "--shop", SHOP)
    # then it fails with the error, which is recorded
    assert code == 1 and "refit for demo-shop.myshopify.com failed" in err
    assert "ShopSettingsError" in err and "no_such_threshold" in err
    [run] = runs_of(engine)
    assert run.outcome == FAILED and run.error is not None and "no_such_threshold" in run.error
    code, out, _ = cli(migrated_url, "jobs", "runs")
    assert code == 0 and "failed" in out and "no_such_threshold" in out


def test_cli_jobs_run_with_the_lease_held_elsewhere_is_not_run(
    engine: Engine, migrated_url: str
) -> None:
    shop = add_shop(engine)
    hold_lease(engine, shop, "rescore", "other-host:42", shop.installed_at + timedelta(days=3650))
    code, _, err = cli(migrated_url, "jobs", "run", "rescore", "--shop", SHOP)
    assert code == 1 and "not run" in err and "other-host:42" in err
    assert runs_of(engine) == []


def test_cli_jobs_run_unknown_job_or_shop_is_refused(engine: Engine, migrated_url: str) -> None:
    code, _, err = cli(migrated_url, "jobs", "run", "sing", "--shop", SHOP)
    assert code == 2 and "'sing' is not one of" in err
    code, _, err = cli(migrated_url, "jobs", "run", "push", "--shop", "nobody.myshopify.com")
    assert code == 1 and "no shop" in err


def test_cli_jobs_runs_with_none_yet_says_so(migrated_url: str) -> None:
    code, out, _ = cli(migrated_url, "jobs", "runs")
    assert (code, out.strip()) == (0, "no job runs yet")


def test_cli_serve_help_offers_no_jobs_and_worker_help_works() -> None:
    result = CliRunner().invoke(main, ["serve", "--help"])
    assert result.exit_code == 0 and "--no-jobs" in result.stdout
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0 and "scheduled jobs" in result.stdout
    assert "SIGTERM" in result.stdout
