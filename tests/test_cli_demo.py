"""`clvsync demo --once --json`: a generated store through the real app, over loopback."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import click
import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import Engine
from sqlmodel import Session, col, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from jobs.context import JobContext
from jobs.runs import run_job
from jobs.scheduler import refit
from plugin.cli import main
from plugin.cli_demo import (
    AdminCalls,
    Progress,
    _deliver,
    _held,
    _step,
    check_in_sync,
    demo_settings,
    faults_met,
    history_end,
    invoked_command,
    tags_in_sync,
    where_to_look,
)
from plugin.devstore.faults import FaultInjector
from plugin.devstore.gen_config import GeneratorConfig
from plugin.devstore.generator import generate_store
from plugin.devstore.state import DevStoreState
from plugin.serving import ListenError, free_port, listen, serve_in_thread
from plugin.store.db import make_engine
from plugin.store.models import Customer, CustomerScore, JobRun, ModelRun, Shop, SyncChange
from tests.helpers import T0, add_shop, score_row
from tests.test_cli import ROOT, assert_port_in_use_error, cli_process, taken_port
from tests.test_compliance import cli_env

JSON_SUMMARY_KEYS = [
    "webhooks_sent",
    "webhooks_acknowledged",
    "customers",
    "orders",
    "backfill",
    "tag_changes_pushed",
    "metafields_pushed",
    "api_cost_used",
    "throttled_responses",
    "api_retries",
    "api_server_errors_met",
    "bulk_operations",
    "tags_in_sync",
    "seconds",
    "recompute",
    "recommendations",
    "product_metafields_pushed",
]


def test_demo_once_json_ingests_scores_and_pushes_the_generated_store(sqlite_path: Path) -> None:
    # when the demo runs once on a small store, with a dev store that fails 10% of the Admin
    # API calls
    url = f"sqlite:///{sqlite_path}"
    started = datetime.now(UTC)
    result = CliRunner().invoke(
        main,
        ["demo", "--customers", "40", "--seed", "2", "--once", "--json", "--database-url", url],
    )
    # then every webhook was acknowledged and processed, and the summary is one JSON object
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert list(summary) == JSON_SUMMARY_KEYS  # tools read it: its keys stay as they are
    assert summary["webhooks_sent"] == summary["webhooks_acknowledged"] > 40
    assert summary["customers"] == 40 and summary["orders"] > 40
    assert 0 < summary["seconds"] <= (datetime.now(UTC) - started).total_seconds()
    # and the store's orders, read back by the backfill, were all held already
    backfill = summary["backfill"]
    assert backfill["orders_read"] > 40 and backfill["orders_applied"] == 0
    assert "since" not in backfill and "covers_all" not in backfill  # the demo's whole read
    assert backfill["orders_unchanged"] + backfill["test_orders_skipped"] == backfill["orders_read"]
    assert summary["recompute"]["customers_scored"] > 0
    # and the model run is named as `clvsync recompute` names it (a run_id is a job run's id)
    model_run_id = summary["recompute"]["model_run_id"]
    assert isinstance(model_run_id, int) and "run_id" not in summary["recompute"]
    # and the desired tags and metafields were pushed, through the faults, exactly
    assert summary["tags_in_sync"] is True
    assert summary["tag_changes_pushed"] > 0 and summary["metafields_pushed"] > 0
    assert summary["recommendations"]["order_lines"] > 0
    assert "webhooks processed" in result.stderr
    # and each step ran as the scheduler runs it: under its lease, recorded as a job run
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            runs = session.exec(select(JobRun.job, JobRun.outcome).order_by(col(JobRun.id))).all()
            audit_dates = set(session.exec(select(SyncChange.applied_at)).all())
            refit_counts = session.exec(select(JobRun.counts).where(JobRun.job == "refit")).one()
    finally:
        engine.dispose()
    assert [tuple(run) for run in runs] == [
        ("backfill", "ok"),
        ("refit", "ok"),
        ("recommend", "ok"),
        ("push", "ok"),
    ]
    assert json.loads(refit_counts)["model_run_id"] == model_run_id
    # and the push's audit is dated now (the prune would delete one dated at the history's end)
    assert audit_dates and min(audit_dates) >= started


def _demo_once(url: str, *options: str) -> tuple[int, dict[str, Any], str]:
    """The demo run once on a small store: its exit code, its JSON summary, its stderr."""
    args = ["demo", "--customers", "40", "--seed", "2", "--once", "--json", "--database-url", url]
    result = CliRunner().invoke(main, [*args, *options])
    lines = result.stdout.strip().splitlines()
    return result.exit_code, json.loads(lines[-1]) if lines else {}, result.stderr


def test_demo_run_again_on_its_database_starts_the_shop_afresh(sqlite_path: Path) -> None:
    # given a database the demo has already run on (as ./clvsync-demo.db is kept between runs)
    url = f"sqlite:///{sqlite_path}"
    first_code, first, _ = _demo_once(url)
    assert first_code == 0 and first["tags_in_sync"] is True
    # when the demo runs on it again, against a new, empty dev store
    code, summary, stderr = _demo_once(url)
    # then it holds only this run's store, reads it back, and pushes its tags to the new store
    assert code == 0, stderr
    assert summary["customers"] == 40 and summary["orders"] == first["orders"]
    assert summary["backfill"]["orders_read"] == first["backfill"]["orders_read"] > 0
    assert summary["tag_changes_pushed"] == first["tag_changes_pushed"] > 0
    assert summary["tags_in_sync"] is True
    # and the job runs recorded are this run's only
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            runs = session.exec(select(JobRun.job).order_by(col(JobRun.id))).all()
    finally:
        engine.dispose()
    assert list(runs) == ["backfill", "refit", "recommend", "push"]


def _desired_tags(url: str) -> dict[int, str]:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            rows = session.exec(select(CustomerScore.customer_id, CustomerScore.tags)).all()
    finally:
        engine.dispose()
    return dict(rows)


async def _app_refit(url: str) -> tuple[str, datetime]:
    """The app's scheduled refit of the demo's shop, run once as the demo's app runs it: on the
    clock the demo gives its app (create_app's: the real one). Its outcome, and its as_of."""
    engine = make_engine(url)
    try:
        async with httpx.AsyncClient() as http:
            ctx = JobContext(engine, demo_settings(url), http)
            result = await run_job(ctx, 1, "refit", refit)
        with Session(engine) as session:
            as_of = session.exec(select(ModelRun.as_of).order_by(col(ModelRun.id).desc())).first()
    finally:
        engine.dispose()
    assert as_of is not None
    return result.outcome, as_of


def _model_run_as_of(url: str, model_run_id: int) -> datetime:
    engine = make_engine(url)
    try:
        with Session(engine) as session:
            run = session.get(ModelRun, model_run_id)
            assert run is not None
            return run.as_of
    finally:
        engine.dispose()


def test_demo_app_refit_on_its_clock_keeps_the_tags_the_demo_pushed(sqlite_path: Path) -> None:
    # given the demo run once (staying up, its app runs the scheduled jobs on its own clock)
    url = f"sqlite:///{sqlite_path}"
    code, summary, stderr = _demo_once(url, "--customers", "100")
    assert code == 0, stderr
    pushed = _desired_tags(url)
    demo_as_of = _model_run_as_of(url, summary["recompute"]["model_run_id"])
    # when the app's nightly refit runs on that clock
    outcome, as_of = anyio.run(_app_refit, url)
    # then it scores as of less than a day after the history the demo scored as of ended (the
    # history ended 2025-12-31, and the refit, as of today, made nearly every customer win-back)
    assert outcome == "ok"
    assert timedelta(0) <= as_of - demo_as_of < timedelta(days=1, minutes=10)
    # and it leaves the customers' tags as the demo pushed them, but for a few the hours moved
    now = _desired_tags(url)
    changed = [customer for customer, tags in pushed.items() if now.get(customer) != tags]
    assert len(pushed) == 100 and len(changed) <= 10, (len(changed), changed[:5])


def test_demo_check_in_sync_fails_when_the_dev_store_is_out_of_sync() -> None:
    # when the demo's own check found a customer without its desired tags
    # then the demo fails, saying so, rather than exiting 0
    with pytest.raises(click.ClickException, match="tags_in_sync is false"):
        check_in_sync({"tags_in_sync": False})
    check_in_sync({"tags_in_sync": True})


def test_demo_tags_in_sync_is_each_customer_holding_its_desired_tags_once(
    engine: Engine,
) -> None:
    # given customer 1 scored with two desired tags, and customer 2 not scored
    shop = add_shop(engine)
    with Session(engine) as session, session.begin():
        session.add(score_row(shop.id, customer_id=1, run_id=1, tags="champions top-20"))
    state = DevStoreState()
    state.load(customers=[{"id": 1, "tags": "clv:champions, clv:top-20, vip"}, {"id": 2}])
    # then the dev store is in sync: tags not under the prefix and a customer not scored count
    # as holding nothing the app wants
    assert tags_in_sync(engine, shop, state, "clv:")
    # and not with a desired tag held twice, nor with an app tag on a customer not scored
    state.customers[1].tags.append("clv:top-20")
    assert not tags_in_sync(engine, shop, state, "clv:")
    state.customers[1].tags.pop()
    state.customers[2].tags.append("clv:lost")
    assert not tags_in_sync(engine, shop, state, "clv:")


def test_demo_held_customers_leave_out_the_deleted(engine: Engine) -> None:
    shop = add_shop(engine)
    with Session(engine) as session, session.begin():
        session.add(Customer(shop_id=shop.id, customer_id=1))
        session.add(Customer(shop_id=shop.id, customer_id=2, deleted_at=T0))
    assert _held(engine, shop.domain) == (1, 0)


def _demo_once_text(url: str, *options: str) -> tuple[int, str, str]:
    """The demo run once on a small store, its summary as text: exit code, stdout, stderr."""
    args = ["demo", "--customers", "40", "--seed", "2", "--once", "--database-url", url]
    result = CliRunner().invoke(main, [*args, *options])
    return result.exit_code, result.stdout, result.stderr


def test_demo_text_summary_is_text_not_python_values(sqlite_path: Path) -> None:
    # when the demo runs once without --json
    code, stdout, stderr = _demo_once_text(f"sqlite:///{sqlite_path}")
    # then its summary reads as text: no dictionaries, no True/False, figures with their names
    assert code == 0, stderr
    assert "{" not in stdout and "True" not in stdout and "False" not in stdout, stdout
    lines = stdout.splitlines()
    assert "tags in sync: yes" in lines, stdout
    backfill = next(line for line in lines if line.startswith("backfill: "))
    assert "orders read" in backfill and "rejected" in backfill, backfill
    assert any(line.startswith("push: ") and "tag changes" in line for line in lines), stdout
    # and the fit is named once for each thing it says ("rules", not "rules, rules")
    scores = next(line for line in lines if line.startswith("scores: "))
    fit = scores.partition(": ")[2].partition(": ")[2].removesuffix(")").split(", ")
    assert len(fit) == len(set(fit)), scores


def test_demo_text_summary_counts_the_dev_store_faults_every_step_met(sqlite_path: Path) -> None:
    # when the demo runs once against a dev store that fails half its Admin API calls
    code, stdout, stderr = _demo_once_text(f"sqlite:///{sqlite_path}", "--devstore-errors", "0.5")
    # then its summary says how many of its calls (the backfill's and the push's) met a 5xx
    assert code == 0, stderr
    found = re.search(
        r"Admin API calls: (\d+) to the dev store .*; (\d+) answered with a 5xx", stdout
    )
    assert found, stdout
    made, failed = int(found[1]), int(found[2])
    # and as many as the dev store's seeded faults failed, over that many calls
    faults = FaultInjector(error_share=0.5, seed=2)
    drawn = sum(faults.plan().error_status is not None for _ in range(made))
    assert failed == drawn > 0 and made > failed
    # and no line claimed a share of the calls failed before any had, only the chance of it
    assert "of its calls fail" not in stderr
    assert "with a 5xx at a 50% chance, on purpose (--devstore-errors)" in stderr, stderr


def test_demo_faults_met_none_says_what_could_have_happened() -> None:
    # when the demo's calls met no fault (the default push, bulk, makes a handful of calls)
    line = faults_met(AdminCalls(made=12, server_errors=0), 0.1)
    # then the summary says none did, and the chance each had, not that 10% failed
    assert line.endswith("none answered with a 5xx (each had a 10% chance)"), line
    # and with the faults off, that they were
    line = faults_met(AdminCalls(made=12, server_errors=0), 0.0)
    assert line.endswith("none answered with a 5xx (--devstore-errors 0)"), line


def test_demo_help_says_what_the_devstore_port_is() -> None:
    result = CliRunner().invoke(main, ["demo", "--help"])
    assert result.exit_code == 0
    assert "The dev store's port" in " ".join(result.stdout.split())


@pytest.mark.parametrize("taken", ["--port", "--devstore-port"])
def test_demo_on_a_port_in_use_exits_1_before_generating(sqlite_path: Path, taken: str) -> None:
    url = f"sqlite:///{sqlite_path}"
    with taken_port() as port:
        # when the demo that stays up is given a port in use, for the app or the dev store
        ports = {"--port": str(free_port()), "--devstore-port": str(free_port()), taken: str(port)}
        args = [item for option, value in ports.items() for item in (option, value)]
        done = cli_process(url, "demo", "--customers", "5", "--database-url", url, *args)
    # then it says which and stops, before generating a store
    assert_port_in_use_error(done, port)
    assert taken in done.stderr and "generating" not in done.stderr


def _wait_for(path: Path, text: str, process: subprocess.Popen[str]) -> bool:
    """Has `process`, still running, written `text` to the file at `path` within 60 s?"""
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        if text in path.read_text():
            return True
        time.sleep(0.1)
    return False


def _console_script() -> str:
    """The installed `clvsync` as the README runs it: relative to the repo (`.venv/bin/clvsync`)
    when the environment is in it."""
    script = Path(sys.executable).parent / "clvsync"
    return os.path.relpath(script, ROOT) if script.is_relative_to(ROOT) else str(script)


def _pasted(command: str) -> subprocess.CompletedProcess[str]:
    """A command the demo printed, pasted in a shell at the repo without `.venv/bin` on PATH."""
    assert shutil.which("clvsync", path="/usr/bin:/bin") is None
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/")}
    if "PYTHONPATH" in os.environ:  # a run of these tests against another checkout
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return subprocess.run(
        ["/bin/sh", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("started_as", ["console script", "python -m"])
def test_demo_staying_up_prints_its_json_summary_before_serving(
    sqlite_path: Path, tmp_path: Path, started_as: str
) -> None:
    # when the demo that stays up runs with --json, started as the README starts it, or not
    url = f"sqlite:///{sqlite_path}"
    ports = ["--port", str(free_port()), "--devstore-port", str(free_port())]
    args = ["demo", "--customers", "20", "--seed", "2", "--json", "--database-url", url, *ports]
    starter = [_console_script()] if started_as == "console script" else [sys.executable, "-m"]
    with (tmp_path / "stderr").open("w+") as stderr:
        demo = subprocess.Popen(
            [*starter, *(["plugin.cli"] if started_as == "python -m" else []), *args],
            cwd=ROOT,
            env={**os.environ, **cli_env(url)},
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        watchdog = threading.Timer(120, demo.kill)  # a summary never printed fails, not hangs
        watchdog.start()
        try:
            assert demo.stdout is not None
            line = demo.stdout.readline()
            served = _wait_for(tmp_path / "stderr", "clvsync demo is running", demo)
            demo.send_signal(signal.SIGINT)
            rest, _ = demo.communicate(timeout=60)
        finally:
            watchdog.cancel()
            demo.kill()
        stderr.seek(0)
        errors = stderr.read()
    # then, while it serves, it has printed the same summary as with --once, as one JSON object
    assert served and line, errors
    summary = json.loads(line)
    assert summary["customers"] == 20 and summary["backfill"]["orders_read"] > 0
    assert summary["tags_in_sync"] is True
    assert rest == ""
    # and Ctrl-C stops it
    assert demo.returncode == 0, errors
    # and its own progress was not lost among the log lines: only warnings are logged
    assert " INFO " not in errors, errors
    # and the commands it said to run work when pasted, though clvsync is not on PATH
    said = (line.strip().partition(" ") for line in errors.splitlines())
    shown = {name: rest.strip() for name, _, rest in said if name in ("figures", "inbox")}
    figures, inbox = _pasted(shown["figures"]), _pasted(shown["inbox"])
    assert figures.returncode == 0, (shown["figures"], figures.stderr)
    assert figures.stdout.startswith("customer_id,") and len(figures.stdout.splitlines()) == 21
    assert inbox.returncode == 0 and "done" in inbox.stdout, (shown["inbox"], inbox.stderr)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("notaurl", "Error: --database-url is not a database URL"),
        ("sqlite:///{missing}/demo.db", "Error: cannot open the database in --database-url"),
        (
            "postgresql+psycopg://bob:s3cretpw@127.0.0.1:1/clv",  # nothing listens on port 1
            "Error: cannot open the database in --database-url "
            "postgresql+psycopg://bob:***@127.0.0.1:1/clv",
        ),
    ],
)
def test_demo_with_a_database_it_cannot_open_exits_1_in_one_line(
    tmp_path: Path, url: str, expected: str
) -> None:
    # when the demo is given a database URL that is not one, or names a database it cannot open
    url = url.format(missing=tmp_path / "missing")
    done = cli_process(url, "demo", "--once", "--customers", "5", "--database-url", url)
    # then it says so in one line, without the password, before generating a store
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and "s3cretpw" not in done.stderr
    assert expected in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_demo_once_without_a_database_url_leaves_no_database_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # when the demo runs once, in a directory of its own, with no --database-url
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["demo", "--customers", "5", "--once", "--json"])
    # then it ran on a temporary database, gone with it: not the staying-up demo's file
    assert result.exit_code == 0, result.output
    assert list(tmp_path.iterdir()) == []


async def _failing(ctx: JobContext, shop: Shop, run_id: int | None) -> dict[str, Any]:
    raise RuntimeError("the dev store went away")


def test_demo_step_that_fails_stops_the_demo_naming_the_job(engine: Engine) -> None:
    shop = add_shop(engine)
    assert shop.id is not None

    async def push() -> None:
        async with httpx.AsyncClient() as http:
            ctx = JobContext(engine, demo_settings("sqlite://"), http, worker="demo-test")
            await _step(ctx, shop.id, "push", _failing)

    with pytest.raises(click.ClickException, match=r"the demo's push failed: .*went away"):
        anyio.run(push)


def test_demo_progress_off_a_terminal_is_a_line_at_most_every_5_seconds_and_the_last(
    capsys: pytest.CaptureFixture[str],
) -> None:
    progress = Progress("webhooks processed", 10)
    for done in range(1, 10):
        progress.update(done)  # within 5 s of the first: only the first is shown
    progress.update(10, final=True)
    assert capsys.readouterr().err == (
        "webhooks processed: 1/10 (10%)\nwebhooks processed: 10/10 (100%)\n"
    )
    # and nothing to count is all of it
    Progress("webhooks processed", 0).update(0, final=True)
    assert capsys.readouterr().err == "webhooks processed: 0/0 (100%)\n"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_demo_progress_on_a_terminal_redraws_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    progress = Progress("webhooks processed", 4)
    progress.update(1)
    progress.update(4, final=True)
    assert terminal.getvalue() == (
        "\rwebhooks processed: 1/4 (25%)\rwebhooks processed: 4/4 (100%)\n"
    )


@pytest.mark.parametrize("option", ["--port", "--devstore-port"])
def test_demo_on_a_port_past_65535_is_a_usage_error(option: str) -> None:
    result = CliRunner().invoke(main, ["demo", option, "99999"])
    assert result.exit_code == 2, result.output
    assert f"Invalid value for '{option}'" in result.stderr


def test_listen_on_a_port_past_65535_raises_listen_error() -> None:
    with pytest.raises(ListenError, match=r"cannot listen on 127\.0\.0\.1 port 99999"):
        listen("127.0.0.1", 99999)


def test_demo_where_to_look_shows_the_database_url_without_its_password() -> None:
    # when the demo that stays up says where to look, for a database URL with a password
    url = "postgresql+psycopg://bob:s3cretpw@db.example/clv"
    domain = "clvsync-dev.myshopify.com"
    shown = where_to_look("http://app", "http://store", domain, url, ".venv/bin/clvsync")
    # then the commands it suggests name the database, not the password
    assert "s3cretpw" not in shown
    assert "DATABASE_URL=postgresql+psycopg://bob:***@db.example/clv .venv/bin/clvsync export" in (
        shown
    )


@pytest.mark.parametrize(
    ("argv0", "expected"),
    [
        ("/repo/.venv/bin/clvsync", ".venv/bin/clvsync"),
        (".venv/bin/clvsync", ".venv/bin/clvsync"),
        ("/repo/clvsync", "./clvsync"),
        ("/opt/tools/bin/clvsync", "/opt/tools/bin/clvsync"),
        ("/repository/bin/clvsync", "/repository/bin/clvsync"),  # beside /repo, not in it
        ("/my tools/bin/clvsync", "'/my tools/bin/clvsync'"),
        ("clvsync", "clvsync"),  # found on PATH
        ("/repo/plugin/cli.py", ".venv/bin/python -m plugin.cli"),  # python -m plugin.cli
    ],
)
def test_demo_invoked_command_is_how_this_process_was_started(argv0: str, expected: str) -> None:
    # when the demo, started from /repo with /repo/.venv/bin/python, says how to run clvsync
    # then it is the console script it was started as, as it was found, or python -m
    assert invoked_command(argv0, Path("/repo"), "/repo/.venv/bin/python") == expected


def test_demo_history_ends_at_the_start_of_the_utc_day() -> None:
    # the same store whenever in the day the demo runs: its history ends at 00:00 UTC
    assert history_end(datetime(2026, 11, 25, 15, 30, tzinfo=UTC)) == datetime(
        2026, 11, 25, tzinfo=UTC
    )
    # a moment given at another offset ends on its UTC day (01:00 at +05:00 is the day before)
    east = timezone(timedelta(hours=5))
    assert history_end(datetime(2026, 11, 25, 1, 0, tzinfo=east)) == datetime(
        2026, 11, 24, tzinfo=UTC
    )


class AnsweringApp:
    """A webhooks endpoint that answers every delivery a little later, counting those it
    acknowledged: the first attempt of every fourth webhook fails with a 503 (Shopify retries
    it), each later one is acknowledged."""

    def __init__(self) -> None:
        self.acknowledged = 0
        self.failed: set[str] = set()

    async def webhooks(self, request: Request) -> Response:
        await anyio.sleep(0.02)
        webhook_id = request.headers["X-Shopify-Webhook-Id"]
        if zlib.crc32(webhook_id.encode()) % 4 == 0 and webhook_id not in self.failed:
            self.failed.add(webhook_id)
            return Response(status_code=503)
        self.acknowledged += 1
        return Response(status_code=200)


class RecordedProgress:
    """Each count shown, beside how many deliveries the app had acknowledged at that moment."""

    def __init__(self, app: AnsweringApp) -> None:
        self.app, self.shown = app, list[tuple[int, int]]()
        self.final: int | None = None

    def update(self, done: int, *, final: bool = False) -> None:
        self.shown.append((done, self.app.acknowledged))
        if final:
            self.final = done


def test_demo_delivery_progress_counts_acknowledged_deliveries_only() -> None:
    # given a small generated store and an app that acknowledges each delivery after a while,
    # some only when retried
    store = generate_store(GeneratorConfig(customers=5), seed=1)
    endpoint = AnsweringApp()
    app = Starlette(routes=[Route("/webhooks", endpoint.webhooks, methods=["POST"])])
    progress = RecordedProgress(endpoint)
    # when the demo delivers the store's events
    with serve_in_thread(app) as url:
        summary = anyio.run(_deliver, store, url, "secret", progress)
    # then the count shown never ran ahead of the deliveries acknowledged (a failed attempt is
    # not counted), and ends, as the final count, at all of them
    assert summary.acknowledged == len(store.events) > 10
    assert endpoint.failed, "no delivery failed: the count of failed ones is not tested"
    assert all(done <= acked for done, acked in progress.shown), progress.shown[:5]
    assert progress.shown[-1][0] == progress.final == len(store.events)
