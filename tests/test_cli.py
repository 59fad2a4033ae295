"""The operator's CLI: shops, export, replay, configuration errors."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from cryptography.fernet import Fernet
from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from plugin.cli import main
from plugin.settings import SettingsError, load_settings
from plugin.store import shops
from plugin.store.models import PARKED, InboxEvent, JobLease, JobRun, ModelRun, Shop
from plugin.store.tokens import TokenCipher
from tests.helpers import SHOP, add_shop, enqueue, order_payload
from tests.test_compliance import cli_env
from webhooks.handlers import HANDLERS
from webhooks.processor import REPLAY_CHUNK, Processor


def run(url: str, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=cli_env(url))
    return result.exit_code, result.stdout, result.stderr


def test_shop_add_stores_token_encrypted_and_list_never_shows_it(
    engine: Engine, migrated_url: str
) -> None:
    code, out, err = run(
        migrated_url, "shop", "add", "My-Shop.myshopify.com", "--token", "shpat_s3cret"
    )
    assert (code, out.strip()) == (0, "shop my-shop.myshopify.com registered")
    assert "clvsync backfill --shop my-shop.myshopify.com" in err
    with Session(engine) as session:
        shop = session.exec(select(Shop)).one()
    assert shop.access_token_encrypted and "shpat_s3cret" not in shop.access_token_encrypted
    key = cli_env(migrated_url)["TOKEN_ENCRYPTION_KEY"]
    assert TokenCipher(key).decrypt(shop.access_token_encrypted) == "shpat_s3cret"
    code, out, _ = run(migrated_url, "shop", "list")
    assert code == 0 and "my-shop.myshopify.com" in out and "installed" in out
    assert "shpat" not in out


@pytest.mark.parametrize("domain", ["evil.com", "shop.myshopify.com.evil.com", "a_b.myshopify.com"])
def test_shop_add_bad_domain_exits_2_with_message(migrated_url: str, domain: str) -> None:
    code, _, err = run(migrated_url, "shop", "add", domain, "--token", "t")
    assert code == 2 and "myshopify.com" in err


def test_shop_add_blank_token_exits_2_naming_the_token_and_stores_nothing(
    engine: Engine, migrated_url: str
) -> None:
    code, _, err = run(migrated_url, "shop", "add", SHOP, "--token", "  ")
    assert code == 2 and "Invalid value for --token: the access token is empty" in err
    with Session(engine) as session:
        assert session.exec(select(Shop)).all() == []


def test_shop_list_without_shops_says_how_to_add_one(migrated_url: str) -> None:
    code, out, _ = run(migrated_url, "shop", "list")
    assert (code, out.strip()) == (
        0,
        "no shops yet: add one with `clvsync shop add DOMAIN --token TOKEN`",
    )


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_export_one_row_per_customer(engine: Engine, migrated_url: str, fmt: str) -> None:
    # given two customers, one with two orders
    add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, customer_id=501, total="10.10"), "a")
    enqueue(engine, "orders/create", order_payload(2, customer_id=501, total="5.05", day=30), "b")
    enqueue(engine, "orders/create", order_payload(3, customer_id=502, total="7.00"), "c")
    Processor(engine).drain()
    # when exported
    code, out, err = run(migrated_url, "export", "--shop", SHOP, "--format", fmt)
    # then each customer has one row with their figures
    assert code == 0, err
    rows = (
        list(csv.DictReader(io.StringIO(out)))
        if fmt == "csv"
        else [json.loads(line) for line in out.splitlines()]
    )
    assert [(str(r["customer_id"]), str(r["orders"]), r["net_spend"]) for r in rows] == [
        ("501", "2", "15.15"),
        ("502", "1", "7.00"),
    ]
    assert rows[0]["first_order_at"] == "2026-01-01T00:00:00+00:00"
    assert rows[0]["last_order_at"] == "2026-01-31T00:00:00+00:00"
    assert rows[0]["currency"] == "USD"


def test_export_unknown_shop_fails_with_message(migrated_url: str) -> None:
    code, _, err = run(migrated_url, "export", "--shop", "nobody.myshopify.com")
    assert code == 1 and "no shop" in err


OTHER_SHOP = "other-shop.myshopify.com"


def _park(engine: Engine, monkeypatch: pytest.MonkeyPatch, *events: tuple[int, str, str]) -> None:
    """Park order webhooks (order id, webhook id, shop) as a handler's bug would."""
    for order_id, webhook_id, domain in events:
        enqueue(engine, "orders/create", order_payload(order_id), webhook_id, shop=domain)
    with monkeypatch.context() as patch:
        patch.setitem(HANDLERS, "orders/create", _broken)
        # one at a time, through the handler broken here (not applied together)
        Processor(engine, max_attempts=1, group_min=len(events) + 1).drain()


def _broken(*_: object) -> None:
    raise RuntimeError("a bug, since fixed")


def _statuses(engine: Engine) -> dict[str, str]:
    with Session(engine) as session:
        return dict(session.exec(select(InboxEvent.webhook_id, InboxEvent.status)).all())


def test_replay_failed_reruns_parked_events(
    engine: Engine, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given an event parked because its handler failed
    add_shop(engine)
    _park(engine, monkeypatch, (1, "a", SHOP))
    assert _statuses(engine) == {"a": PARKED}
    # when the bug is fixed and the parked events replayed
    code, out, err = run(migrated_url, "webhooks", "replay", "--failed")
    # then it is applied
    assert code == 0, err
    assert "1 parked events to re-run" in out
    assert "re-ran 1: 1 done, 0 failed again (to be retried), 0 failed again and parked" in out
    assert _statuses(engine) == {"a": "done"}


def test_replay_failed_runs_more_events_than_one_transaction_takes(
    engine: Engine, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given more parked events than the replay runs in one transaction
    add_shop(engine)
    count = REPLAY_CHUNK + 3
    _park(engine, monkeypatch, *((n, f"w{n}", SHOP) for n in range(1, count + 1)))
    # when replayed, then every one of them is run
    code, out, err = run(migrated_url, "webhooks", "replay", "--failed")
    assert code == 0, err
    assert f"re-ran {count}: {count} done" in out
    assert set(_statuses(engine).values()) == {"done"}


def test_replay_failed_for_a_shop_runs_only_its_parked_events(
    engine: Engine, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given two shops with a parked event each, and another shop's event waiting its turn
    add_shop(engine)
    add_shop(engine, OTHER_SHOP)
    _park(engine, monkeypatch, (1, "a", SHOP), (2, "b", OTHER_SHOP))
    enqueue(engine, "orders/create", order_payload(3), "c", shop=OTHER_SHOP)
    # when one shop's parked events are replayed
    code, out, err = run(migrated_url, "webhooks", "replay", "--failed", "--shop", SHOP)
    # then only that shop's event was run: the other shop's are as they were
    assert code == 0, err
    assert "re-ran 1: 1 done" in out
    assert _statuses(engine) == {"a": "done", "b": PARKED, "c": "pending"}


def test_replay_failed_for_an_unknown_shop_exits_1_naming_it(
    engine: Engine, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a shop with a parked event
    add_shop(engine)
    _park(engine, monkeypatch, (1, "a", SHOP))
    # when the parked events of a shop that is not registered are replayed
    code, _, err = run(
        migrated_url, "webhooks", "replay", "--failed", "--shop", "nobody.myshopify.com"
    )
    # then it is refused, naming the shop, and nothing is run
    assert code == 1
    assert "no shop 'nobody.myshopify.com'" in err
    assert _statuses(engine) == {"a": PARKED}


def test_replay_failed_that_fail_again_exits_1_and_says_so(
    engine: Engine, migrated_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given a parked event whose handler still fails
    add_shop(engine)
    _park(engine, monkeypatch, (1, "a", SHOP))
    monkeypatch.setitem(HANDLERS, "orders/create", _broken)
    # when replayed
    code, out, _ = run(migrated_url, "webhooks", "replay", "--failed")
    # then the summary and the status say it failed again, and it is parked again
    assert code == 1
    assert "re-ran 1: 0 done, 0 failed again (to be retried), 1 failed again and parked" in out
    assert _statuses(engine) == {"a": PARKED}


def test_settings_missing_secret_outside_development_names_it() -> None:
    with pytest.raises(SettingsError, match="SHOPIFY_API_SECRET is missing"):
        load_settings({"TOKEN_ENCRYPTION_KEY": "x"}, env_file=None)


def test_settings_placeholder_secret_is_refused() -> None:
    env = {"SHOPIFY_API_SECRET": "changeme", "SHOPIFY_API_KEY": "k", "TOKEN_ENCRYPTION_KEY": "k"}
    with pytest.raises(SettingsError, match="SHOPIFY_API_SECRET is a placeholder"):
        load_settings(env, env_file=None)


def test_settings_development_mode_fills_in_dev_secrets() -> None:
    settings = load_settings({"CLVSYNC_ENV": "development"}, env_file=None)
    assert settings.development and settings.api_secret and "api_secret" not in repr(settings)


def test_settings_admin_url_points_shops_at_a_dev_store_or_is_refused() -> None:
    dev = {"CLVSYNC_ENV": "development"}
    assert load_settings(dev, env_file=None).admin_url is None
    pointed = load_settings({**dev, "SHOPIFY_ADMIN_URL": "http://127.0.0.1:8100/"}, env_file=None)
    assert pointed.admin_url == "http://127.0.0.1:8100"
    with pytest.raises(SettingsError, match="SHOPIFY_ADMIN_URL must be an http"):
        load_settings({**dev, "SHOPIFY_ADMIN_URL": "127.0.0.1:8100"}, env_file=None)


def test_cli_configuration_error_exits_with_the_variable_name(migrated_url: str) -> None:
    env = {**cli_env(migrated_url), "SHOPIFY_API_SECRET": ""}
    result = CliRunner().invoke(main, ["shop", "list"], env=env)
    assert result.exit_code == 1 and "SHOPIFY_API_SECRET" in result.stderr


# --- recompute: the refit and rescore jobs, run now ---------------------------------------------


def _hold_lease(engine: Engine, shop_id: int, lease: str, holder: str) -> None:
    with Session(engine) as session, session.begin():
        until = datetime.now(UTC) + timedelta(minutes=10)
        session.add(JobLease(shop_id=shop_id, job=lease, holder=holder, expires_at=until))


def _runs(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return [
            (job, outcome)
            for job, outcome in session.exec(
                select(JobRun.job, JobRun.outcome).order_by(col(JobRun.id))
            )
        ]


@pytest.mark.parametrize("changed", [[], ["--changed"]])
def test_recompute_while_the_scoring_lease_is_held_exits_1_and_scores_nothing(
    engine: Engine, migrated_url: str, changed: list[str]
) -> None:
    # given a shop whose scoring lease (refit and rescore share it) another worker holds
    shop = add_shop(engine)
    assert shop.id is not None
    enqueue(engine, "orders/create", order_payload(1, customer_id=501), "a")
    Processor(engine).drain()
    _hold_lease(engine, shop.id, "scoring", "other-host:1")
    # when recomputed from the CLI
    code, _, err = run(migrated_url, "recompute", "--shop", SHOP, *changed)
    # then it is not run, says who runs it, and nothing is scored
    assert code == 1 and "not run" in err and "other-host:1" in err
    with Session(engine) as session:
        assert session.exec(select(func.count()).select_from(ModelRun)).one() == 0


def test_recompute_is_recorded_as_a_refit_then_a_rescore_run(
    engine: Engine, migrated_url: str
) -> None:
    # given a shop with an order
    add_shop(engine)
    enqueue(engine, "orders/create", order_payload(1, customer_id=501), "a")
    Processor(engine).drain()
    # when recomputed, then re-scored
    code, out, err = run(migrated_url, "recompute", "--shop", SHOP)
    assert code == 0, err
    code, _, err = run(migrated_url, "recompute", "--shop", SHOP, "--changed")
    assert code == 0, err
    # then both are job runs, as the scheduler's are, and the summary names the first
    assert _runs(engine) == [("refit", "ok"), ("rescore", "ok")]
    summary = json.loads(out)
    assert summary["outcome"] == "ok" and summary["kind"] == "full"
    with Session(engine) as session:
        assert session.get(JobRun, summary["run_id"]) is not None


# --- a shop whose token the store refused ---------------------------------------------------------


def _mark_needs_reauth(engine: Engine) -> None:
    with Session(engine) as session, session.begin():
        shop = session.exec(select(Shop)).one()
        shop.needs_reauth = True


def test_shop_list_shows_a_shop_needing_reauthorisation_and_the_fix(
    engine: Engine, migrated_url: str
) -> None:
    # given a shop whose token a 401 marked as refused
    add_shop(engine)
    _mark_needs_reauth(engine)
    # when the shops are listed
    code, out, _ = run(migrated_url, "shop", "list")
    # then its state says so, and how to fix it
    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith(SHOP))
    assert row.split()[1] == "needs-reauth"
    assert "clvsync shop add DOMAIN --token TOKEN" in out


def test_shop_list_shows_an_uninstalled_shop_without_its_token(
    engine: Engine, migrated_url: str
) -> None:
    # given a shop that uninstalled the app (its token discarded) beside an installed one
    add_shop(engine)
    add_shop(engine, "other-shop.myshopify.com")
    enqueue(engine, "app/uninstalled", {"id": 1, "domain": SHOP}, "u1")
    Processor(engine).drain()
    # when the shops are listed
    code, out, _ = run(migrated_url, "shop", "list")
    # then its state and token column say so; the other is installed, with its token
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:] if line}
    assert rows[SHOP][1] == "uninstalled" and rows[SHOP][4] == "no"
    other = rows["other-shop.myshopify.com"]
    assert other[1] == "installed" and other[4] == "yes"


@pytest.mark.parametrize(
    "command", [["push"], ["backfill"], ["jobs", "run", "push"], ["jobs", "run", "backfill"]]
)
def test_run_for_a_shop_needing_reauthorisation_names_the_fix(
    engine: Engine, migrated_url: str, command: list[str]
) -> None:
    # given a shop whose token a 401 marked as refused
    add_shop(engine)
    _mark_needs_reauth(engine)
    # when a job that calls the store is run for it
    code, _, err = run(migrated_url, *command, "--shop", SHOP)
    # then it exits 1 saying what to do, and no failed run is recorded
    assert code == 1
    assert "needs to authorise the app again" in err
    assert f"clvsync shop add {SHOP} --token TOKEN" in err
    assert _runs(engine) == []


def test_dry_run_for_a_shop_needing_reauthorisation_still_shows_the_plan(
    engine: Engine, migrated_url: str
) -> None:
    # given a shop whose token a 401 marked as refused
    add_shop(engine)
    _mark_needs_reauth(engine)
    # when its push is dry run, which calls nothing
    code, out, err = run(migrated_url, "push", "--shop", SHOP, "--dry-run", "--json")
    # then the plan is shown (nothing to change yet), and no run is recorded
    assert code == 0, err
    assert json.loads(out)["dry_run"] is True
    assert _runs(engine) == []


# --- logging --------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def cli_process(url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own: logging is configured once per process."""
    return subprocess.run(
        [sys.executable, "-m", "plugin.cli", *args],
        cwd=ROOT,
        env={**os.environ, **cli_env(url), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_settings_unknown_log_level_names_the_variable() -> None:
    env = {"CLVSYNC_ENV": "development", "CLVSYNC_LOG_LEVEL": "verbose"}
    with pytest.raises(SettingsError, match="CLVSYNC_LOG_LEVEL must be one of DEBUG, INFO"):
        load_settings(env, env_file=None)
    assert (
        load_settings({**env, "CLVSYNC_LOG_LEVEL": " debug "}, env_file=None).log_level == "DEBUG"
    )


@pytest.mark.parametrize("command", [["worker"], ["shop", "list"]])
def test_cli_unknown_log_level_exits_1_naming_the_variable(
    sqlite_path: Path, command: list[str]
) -> None:
    # when any command runs with a log level logging does not know
    done = cli_process(f"sqlite:///{sqlite_path}", *command, CLVSYNC_LOG_LEVEL="verbose")
    # then it stops at once with one line naming the variable, not a traceback
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "Error: configuration: CLVSYNC_LOG_LEVEL must be one of" in done.stderr


def test_cli_one_shot_command_logs_at_the_level_asked(sqlite_path: Path) -> None:
    # when a command other than serve or worker runs at DEBUG
    done = cli_process(f"sqlite:///{sqlite_path}", "db", "upgrade", CLVSYNC_LOG_LEVEL="DEBUG")
    # then what it does is logged, in the app's format
    assert done.returncode == 0, done.stderr
    assert " INFO alembic.runtime.migration: " in done.stderr


# --- a port in use --------------------------------------------------------------------------------


@contextlib.contextmanager
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield int(other.getsockname()[1])


def assert_port_in_use_error(done: subprocess.CompletedProcess[str], port: int) -> None:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert f"Error: port {port} on 127.0.0.1 is already in use" in done.stderr


def test_serve_on_a_port_in_use_exits_1_before_starting_the_jobs(sqlite_path: Path) -> None:
    # when the app is started on a port in use
    with taken_port() as port:
        done = cli_process(f"sqlite:///{sqlite_path}", "serve", "--port", str(port))
    # then it says so and stops, before the processor or the scheduler started
    assert_port_in_use_error(done, port)
    assert "--port" in done.stderr
    assert "processor started" not in done.stderr and "cheduler started" not in done.stderr


# --- servers log at CLVSYNC_LOG_LEVEL ------------------------------------------------------------


def served_output(url: str, args: list[str], path: str, level: str) -> str:
    """Start a server command of the CLI at `level`, GET `path` once it answers, stop it with
    SIGTERM; what it wrote on stdout and stderr (uvicorn writes its access lines on stdout)."""
    from plugin.serving import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "plugin.cli", *args, "--port", str(port)],
        cwd=ROOT,
        env={**os.environ, **cli_env(url), "CLVSYNC_LOG_LEVEL": level},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}{path}").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "did not start"
            time.sleep(0.1)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)
    return output


@pytest.mark.parametrize(
    ("level", "logged"), [("INFO", True), ("WARNING", False), ("ERROR", False)]
)
def test_serve_logs_uvicorn_and_its_access_lines_at_the_level_asked(
    sqlite_path: Path, level: str, logged: bool
) -> None:
    # when the app is served at a level, and asked for its health
    output = served_output(f"sqlite:///{sqlite_path}", ["serve", "--no-jobs"], "/healthz", level)
    # then uvicorn's own lines and its access lines are there at INFO, and only then
    assert ("Started server process" in output) is logged, output
    assert ('"GET /healthz HTTP/1.1" 200' in output) is logged, output


def test_shop_list_marks_a_token_no_key_reads_and_says_the_way_out(
    engine: Engine, migrated_url: str
) -> None:
    # given a shop whose token is stored under a key that is no longer configured, and one
    # stored under the configured key
    with Session(engine) as session, session.begin():
        other = TokenCipher(Fernet.generate_key().decode())
        shops.add_shop(session, "old-key.myshopify.com", "shpat_a", other, datetime.now(UTC))
    add_shop(engine)
    # when the shops are listed
    code, out, _ = run(migrated_url, "shop", "list")
    # then the first token is unreadable, the second readable, and the fix is given; times to
    # the second, as the exports write them
    assert code == 0
    cells = {line.split()[0]: line.split() for line in out.splitlines() if ".myshopify" in line}
    assert cells["old-key.myshopify.com"][4] == "unreadable" and cells[SHOP][4] == "yes"
    assert "TOKEN_ENCRYPTION_KEY_PREVIOUS (then clvsync shop rekey)" in out
    assert datetime.fromisoformat(cells[SHOP][5]).microsecond == 0
    assert len(cells[SHOP][5]) == len("2026-01-01T00:00:00+00:00")


def test_shop_add_without_a_token_names_the_variable_too(migrated_url: str) -> None:
    result = CliRunner().invoke(
        main,
        ["shop", "add", "a.myshopify.com"],
        env=cli_env(migrated_url) | {"CLVSYNC_SHOP_TOKEN": ""},
    )
    assert result.exit_code == 2
    assert "Missing option '--token' (or set CLVSYNC_SHOP_TOKEN)" in result.stderr
    help_text = CliRunner().invoke(main, ["shop", "add", "--help"]).stdout
    assert "CLVSYNC_SHOP_TOKEN" in help_text and "[required]" in help_text
