"""The `clvsync` command line: the operator's side of the app."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import socket
import sys
from collections.abc import Generator, Iterable, Iterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, TextIO

import click
from click.core import ParameterSource
from sqlmodel import Session, col, select

from jobs import queue
from jobs.backfill import last_backfill_start
from jobs.queue import Due
from plugin.cli_backtest import backtest
from plugin.cli_database import (
    load_command_settings,
    open_store,
    shop_or_fail,
)
from plugin.cli_demo import demo
from plugin.cli_devstore import devstore
from plugin.cli_jobs import jobs_group, run_now, run_summary
from plugin.cli_output import quiet_when_the_reader_stops
from plugin.cli_redact import SHOPIFY_ID, redact
from plugin.cli_settings import shop_settings
from plugin.domain.ledger_values import MAX_ID
from plugin.domain.writeback import DEFAULT_TAG_PREFIX
from plugin.serving import ListenError, limits, listen, run_server
from plugin.settings import Settings, SettingsError, load_log_level
from plugin.store import inbox, ledger, recommendations, shops
from plugin.store.models import (
    BundleCandidate,
    CustomerRecommendation,
    CustomerScore,
    ModelRun,
    Shop,
)
from plugin.store.tokens import TokenCipher, TokenDecryptionError, settings_cipher
from plugin.wording import counted

LEDGER_COLUMNS = (
    "customer_id",
    "orders",
    "net_spend",
    "currency",
    "first_order_at",
    "last_order_at",
)
# from the last scoring run (null until `clvsync recompute` or the refit has run):
SCORE_COLUMNS = (
    "aov",
    "mean_days_between_orders",
    "trailing_12m_spend",
    "historical_clv",
    "p_alive",
    "expected_purchases",
    "expected_next_order_at",
    "expected_spend_per_order",
    "predicted_clv",
    "recency_score",
    "frequency_score",
    "monetary_score",
    "segment",
    "reorder_due_at",
)
EXPORT_COLUMNS = (
    *LEDGER_COLUMNS,
    *SCORE_COLUMNS,
    "desired_tags",
    # as last confirmed in the store by a push or read back by a reconcile:
    "pushed_tags",
    # added later, at the end, so that readers by position keep working:
    "confidence",  # the scoring run's: "fitted" models, or "rules" for a small or young shop
    "recommended_products",  # the last recommendations run's product ids, best first
)
BUNDLE_COLUMNS = ("rank", "product_ids", "orders", "lift", "combined_price")
_MONEY_FIGURES = frozenset(
    {"aov", "trailing_12m_spend", "historical_clv", "expected_spend_per_order", "predicted_clv"}
)
_CENT = Decimal("0.01")


def listen_or_fail(host: str, port: int, option: str) -> socket.socket:
    """A socket bound to (host, port), or a ClickException (exit 1) saying what to do."""
    try:
        return listen(host, port)
    except ListenError as exc:
        raise click.ClickException(
            f"{exc}: stop what listens there, or choose another port with {option}"
        ) from None


def _now() -> datetime:
    return datetime.now(UTC)


@click.group()
@click.pass_context
def main(ctx: click.Context) -> None:
    """clvsync: customer lifetime value, segments and recommendations for Shopify stores."""
    # the demo draws its own progress on stderr: only warnings, unless asked for more
    default = "WARNING" if ctx.invoked_subcommand == "demo" else "INFO"
    try:
        level = load_log_level(default=default)
    except SettingsError as exc:
        raise click.ClickException(f"configuration: {exc}") from None
    ctx.meta[_LOG_LEVEL] = level
    _configure_logging(level)


_LOG_LEVEL = "clvsync.log_level"  # in the click context's meta, which subcommands share


def server_log_level() -> str:
    """CLVSYNC_LOG_LEVEL as uvicorn takes it (lower case): its own lines and its access lines
    (logged at INFO) follow it, as the app's do. INFO for a command run without `main`."""
    return str(click.get_current_context().meta.get(_LOG_LEVEL, "INFO")).lower()


def _configure_logging(level: str) -> None:
    """Every command logs to stderr at CLVSYNC_LOG_LEVEL (the jobs it runs say what they did)."""
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # the migrations' "Context impl ..." lines on every command are noise below DEBUG
    logging.getLogger("alembic").setLevel(level if level == "DEBUG" else "WARNING")


def _warn_if_development(settings: Settings) -> None:
    if settings.development:
        logging.getLogger("clvsync").warning(
            "development mode: fixed, public development secrets are in use"
        )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--no-jobs",
    is_flag=True,
    help="Do not run the scheduled jobs in this process (run `clvsync worker` for them).",
)
def serve(host: str, port: int, no_jobs: bool) -> None:
    """Run the app: webhooks endpoint, inbox processor and scheduled jobs, under uvicorn
    (connections and request heads limited by CLVSYNC_MAX_CONNECTIONS and
    CLVSYNC_MAX_HEADER_BYTES)."""
    from plugin.app import create_app

    settings = load_command_settings()
    _warn_if_development(settings)
    sock = listen_or_fail(host, port, "--port")  # before the processor and the jobs start
    with open_store(settings) as engine:
        app = create_app(settings, engine=engine, run_jobs=not no_jobs)
        run_server(
            app,
            sock,
            log_level=server_log_level(),
            **limits(settings.max_connections, settings.max_header_bytes),
        )


@main.command()
def worker() -> None:
    """Run the inbox processor and the scheduled jobs without the web server, until SIGINT or
    SIGTERM (any number of workers may share one PostgreSQL database)."""
    import anyio

    from plugin.app import run_worker

    settings = load_command_settings()
    _warn_if_development(settings)
    with open_store(settings) as engine:
        anyio.run(run_worker, settings, engine)


@main.group()
def shop() -> None:
    """Shops this app serves."""


@shop.command("add")
@click.argument("domain")
@click.option(
    "--token",
    envvar="CLVSYNC_SHOP_TOKEN",
    help="The custom app's Admin API access token (or set CLVSYNC_SHOP_TOKEN, which keeps it "
    "out of the shell history and the process list).  [required]",
)
def shop_add(domain: str, token: str | None) -> None:
    """Register a store that uses a custom app's Admin API token."""
    if token is None:  # click's own message would not name the variable
        raise click.UsageError("Missing option '--token' (or set CLVSYNC_SHOP_TOKEN).")
    settings = load_command_settings()
    try:
        with open_store(settings) as engine:
            with Session(engine) as session, session.begin():
                added = shops.add_shop(session, domain, token, settings_cipher(settings), _now())
                assert added.id is not None
                shop_id, added_domain = added.id, added.domain
                backfilled = last_backfill_start(session, shop_id) is not None
                whole = last_backfill_start(session, shop_id, complete=True) is not None
            click.echo(f"shop {added_domain} registered")
            if not whole:
                queue.enqueue(engine, [Due("backfill", shop_id, _now())])
                click.echo(_backfill_queued(added_domain, backfilled), err=True)
    except shops.ShopDomainError as exc:
        raise click.BadParameter(str(exc), param_hint="DOMAIN") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--token") from None


def _backfill_queued(domain: str, backfilled: bool) -> str:
    run_it = (
        "a backfill is queued for `clvsync serve` or `clvsync worker` to run, or run it now:"
        f" clvsync backfill --shop {domain}"
    )
    if backfilled:  # a new token may be granted the read_all_orders the last one lacked
        return (
            "the orders its last backfill could not read (the history before the last 60 days,"
            f" without read_all_orders, or orders it could not read): {run_it}"
        )
    return (
        f"its order history (webhooks bring only what happens from now on): {run_it}; the"
        " scheduled push waits for it"
    )


@shop.command("rekey")
def shop_rekey() -> None:
    """Store every shop's access token again under TOKEN_ENCRYPTION_KEY, read with it or with
    TOKEN_ENCRYPTION_KEY_PREVIOUS: after it, the previous key can be unset. Exit 1 if a token
    decrypts with neither (that shop's token must be added again)."""
    settings = load_command_settings()
    with open_store(settings) as engine, Session(engine) as session, session.begin():
        rekeyed, unreadable = shops.rekey_tokens(session, settings_cipher(settings))
    click.echo(f"{counted(rekeyed, 'access token')} stored under TOKEN_ENCRYPTION_KEY")
    if unreadable:
        add = "store each again with clvsync shop add DOMAIN --token TOKEN"
        if settings.token_encryption_key_previous:
            read, way_out = "decrypt with neither key", add
        else:
            read = "do not decrypt with TOKEN_ENCRYPTION_KEY"
            way_out = (
                "set TOKEN_ENCRYPTION_KEY_PREVIOUS to the key they were stored with and run "
                f"this again, or {add}"
            )
        raise click.ClickException(
            f"tokens that {read}, left as they were: {', '.join(unreadable)}; {way_out}"
        )


@shop.command("list")
def shop_list() -> None:
    """The registered shops and their state (never their tokens)."""
    settings = load_command_settings()
    with open_store(settings) as engine, Session(engine) as session:
        rows = shops.list_shops(session)
    if not rows:
        click.echo("no shops yet: add one with `clvsync shop add DOMAIN --token TOKEN`")
        return
    cipher = settings_cipher(settings)
    click.echo(
        f"{'domain':<40} {'state':<13} {'currency':<8} {'time_zone':<30} {'token':<10} installed_at"
    )
    tokens = [_token_state(cipher, row) for row in rows]
    for row, token in zip(rows, tokens, strict=True):
        zone = row.iana_timezone or "-"  # not read yet: UTC days until the backfill reads it
        click.echo(
            f"{row.domain:<40} {_shop_state(row):<13} {row.currency or '-':<8} {zone:<30} "
            f"{token:<10} {row.installed_at.isoformat(timespec='seconds')}"
        )
    if any(_shop_state(row) == NEEDS_REAUTH for row in rows):
        click.echo(
            f"\n{NEEDS_REAUTH}: the store refused the shop's access token (401); push, reconcile "
            "and backfill wait until it is authorised again. For a custom app, store a new "
            "token: clvsync shop add DOMAIN --token TOKEN"
        )
    if UNREADABLE in tokens:
        click.echo(
            f"\n{UNREADABLE}: the token decrypts with neither TOKEN_ENCRYPTION_KEY nor "
            "TOKEN_ENCRYPTION_KEY_PREVIOUS, so the shop's jobs cannot call its store: set the "
            "key it was stored with as TOKEN_ENCRYPTION_KEY_PREVIOUS (then clvsync shop rekey), "
            "or store it again: clvsync shop add DOMAIN --token TOKEN"
        )


NEEDS_REAUTH = "needs-reauth"
UNREADABLE = "unreadable"


def _token_state(cipher: TokenCipher, shop: Shop) -> str:
    """Whether the shop has a token, and whether the keys configured read it."""
    if shop.access_token_encrypted is None:
        return "no"
    try:
        cipher.decrypt(shop.access_token_encrypted)
    except TokenDecryptionError:
        return UNREADABLE
    return "yes"


def _shop_state(shop: Shop) -> str:
    if not shop.installed:
        return "uninstalled"
    return NEEDS_REAUTH if shop.needs_reauth else "installed"


shop.add_command(shop_settings)


def _cell(value: Any) -> Any:
    """A value as the exports write it: times to the second with their offset, money as text."""
    if isinstance(value, datetime):
        return _timestamp(value)
    if isinstance(value, Decimal):
        return str(value)
    return value


def _timestamp(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


_MONEY_LIMIT = 1e15  # past this a model's figure is no amount (a fit that diverged)


def _money(value: float | None) -> str | None:
    """A model's money figure as text with two decimals (a float carries no more meaning);
    null when it is no finite amount."""
    if value is None or not math.isfinite(value) or abs(value) >= _MONEY_LIMIT:
        return None
    cents = Decimal(repr(value)).quantize(_CENT, rounding=ROUND_HALF_EVEN)
    return str(cents.copy_abs() if cents.is_zero() else cents)


def _figure(name: str, value: Any) -> Any:
    if isinstance(value, datetime):
        return _timestamp(value)
    if isinstance(value, float):
        if name in _MONEY_FIGURES:
            return _money(value)
        return round(value, 4) if math.isfinite(value) else None
    return value


def _tag_list(tags: Iterable[str]) -> str:
    """Tags as the export lists them: sorted, so desired and pushed compare side by side."""
    return " ".join(sorted(tags))


def _score_cells(score: CustomerScore | None, prefix: str) -> dict[str, Any]:
    if score is None:
        return dict.fromkeys((*SCORE_COLUMNS, "desired_tags"))
    cells = {name: _figure(name, getattr(score, name)) for name in SCORE_COLUMNS}
    cells["desired_tags"] = _tag_list(prefix + tag for tag in score.tags.split())
    return cells


def _recommended(session: Session, shop_id: int) -> Generator[tuple[int, str]]:
    """Each customer's recommended product ids, space-separated, in customer id order."""
    query = (
        select(CustomerRecommendation.customer_id, CustomerRecommendation.product_ids)
        .where(CustomerRecommendation.shop_id == shop_id)
        .order_by(col(CustomerRecommendation.customer_id))
        .execution_options(yield_per=1000)
    )
    result = session.exec(query)
    try:
        for customer_id, product_ids in result:
            yield customer_id, " ".join(str(p) for p in json.loads(product_ids))
    finally:
        result.close()  # a server-side cursor on PostgreSQL, left open when the merge ends first


def _export_rows(session: Session, shop: Shop) -> Generator[dict[str, Any]]:
    """The customers' rows, the settings read now: refused before a header is written."""
    from jobs.shop_settings import ShopSettingsError, stored_settings

    try:
        prefix = stored_settings(shop).get("tag_prefix", DEFAULT_TAG_PREFIX)  # as pushed
    except ShopSettingsError as exc:
        raise click.ClickException(str(exc)) from None
    return _customer_rows(session, shop, prefix)


def _customer_rows(session: Session, shop: Shop, prefix: str) -> Generator[dict[str, Any]]:
    assert shop.id is not None
    runs = select(ModelRun.id, ModelRun.confidence).where(ModelRun.shop_id == shop.id)
    confidence = {run_id: level for run_id, level in session.exec(runs)}
    # both streams are in customer id order: merged, not held in memory
    with contextlib.closing(_recommended(session, shop.id)) as recommended:
        pending = next(recommended, None)
        for customer, score, synced in ledger.iter_customers(session, shop.id):
            while pending is not None and pending[0] < customer.customer_id:
                pending = next(recommended, None)
            products = pending[1] if pending and pending[0] == customer.customer_id else None
            yield {
                "customer_id": customer.customer_id,
                "orders": customer.orders,
                "net_spend": str(customer.net_spend),
                "currency": shop.currency,
                "first_order_at": _timestamp(customer.first_order_at),
                "last_order_at": _timestamp(customer.last_order_at),
                **_score_cells(score, prefix),
                "pushed_tags": _tag_list(json.loads(synced.tags)) if synced else None,
                "confidence": confidence.get(score.run_id) if score else None,
                "recommended_products": products,
            }


def _bundle_rows(candidates: list[BundleCandidate]) -> Iterator[dict[str, Any]]:
    for candidate in candidates:
        yield {
            "rank": candidate.rank,
            "product_ids": candidate.product_ids,
            "orders": candidate.orders,
            "lift": round(candidate.lift, 2),
            "combined_price": str(candidate.combined_price),
        }


def _write_rows(
    rows: Iterator[dict[str, Any]],
    fmt: str,
    out: TextIO,
    columns: tuple[str, ...] = EXPORT_COLUMNS,
) -> int:
    count = 0
    writer = csv.DictWriter(out, columns, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    for row in rows:
        if writer is not None:
            writer.writerow(row)
        else:
            out.write(json.dumps(row) + "\n")
        count += 1
    return count


def _check_export_options(customer: int | None, bundles: bool) -> None:
    """Options that ask for two different exports are refused, rather than one of them
    silently dropped (before anything is opened or written)."""
    if customer is not None and bundles:
        raise click.UsageError("--customer and --bundles are two different exports: give one")
    format_given = click.get_current_context().get_parameter_source("fmt")
    if customer is not None and format_given is not ParameterSource.DEFAULT:
        raise click.UsageError(
            "--customer writes one JSON report; --format (csv or jsonl) is for the rows of all "
            "customers or of --bundles: leave it out"
        )


@main.command()
@click.option("--shop", "domain", required=True, help="The shop's NAME.myshopify.com domain.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv", show_default=True
)
@click.option(
    "--customer",
    type=SHOPIFY_ID,
    default=None,
    metavar="ID",
    help="Report everything held for one customer (for a data request), as JSON.",
)
@click.option(
    "--bundles",
    is_flag=True,
    help="The bundle candidates of the last recommendations run instead, for review.",
)
@click.option("--output", "-o", type=click.File("w"), default="-", help="Default: stdout.")
def export(domain: str, fmt: str, customer: int | None, bundles: bool, output: TextIO) -> None:
    """One row per customer with the figures held so far (or one customer's full report, or
    the shop's bundle candidates)."""
    _check_export_options(customer, bundles)
    with quiet_when_the_reader_stops(output):
        summary = _export(domain, fmt, customer, bundles, output)
        output.flush()  # a reader gone is found here, not in Python's flush at exit
    if summary is not None:
        click.echo(summary, err=True)


def _export(
    domain: str, fmt: str, customer: int | None, bundles: bool, output: TextIO
) -> str | None:
    """Write the export asked for; the line that sums it up, if any."""
    with open_store(load_command_settings()) as engine, Session(engine) as session:
        shop = shop_or_fail(session, domain)
        assert shop.id is not None
        if bundles:
            return _export_bundles(session, shop, fmt, output)
        if customer is not None:
            _write_customer_report(session, shop, customer, output)
            return None
        # closed here, while the session and the engine are open, even when a write fails: left
        # to the garbage collector, their cursors were closed on a disposed engine (an error)
        with contextlib.closing(_export_rows(session, shop)) as customers:
            count = _write_rows(customers, fmt, output)
    return f"exported {count} customers of {shop.domain}"


def _export_bundles(session: Session, shop: Shop, fmt: str, out: TextIO) -> str:
    """The last recommendations run's bundle candidates, but those with a product the store
    has been found not to offer since (each keeps its rank)."""
    assert shop.id is not None
    gone = recommendations.products_gone(session, shop.id)
    candidates = recommendations.bundle_candidates(session, shop.id)
    offered = [c for c in candidates if gone.isdisjoint(map(int, c.product_ids.split()))]
    count = _write_rows(_bundle_rows(offered), fmt, out, BUNDLE_COLUMNS)
    summary = f"exported {count} bundle candidates of {shop.domain}"
    if left_out := len(candidates) - len(offered):
        summary += f" ({left_out} left out: a product of theirs is gone from the store)"
    return summary


def _write_customer_report(session: Session, shop: Shop, customer: int, output: TextIO) -> None:
    assert shop.id is not None
    report = ledger.customer_report(session, shop.id, customer)
    if report is None:
        raise click.ClickException(f"nothing is held for customer {customer} of {shop.domain}")
    # the cells of the rows export: the models' money as text with cents, other figures to 4
    # decimals (their floats carry binary noise), amounts held exactly and times by `_cell`
    if (scores := report["scores"]) is not None:
        report["scores"] = {name: _figure(name, value) for name, value in scores.items()}
    head = {"shop": shop.domain, "currency": shop.currency, "customer_id": customer}
    json.dump({**head, **report}, output, indent=2, default=_cell)
    output.write("\n")


@main.group()
def webhooks() -> None:
    """The webhook inbox."""


@webhooks.command("status")
def webhooks_status() -> None:
    """How many events are pending, done and parked."""
    with open_store(load_command_settings()) as engine, Session(engine) as session:
        counts = inbox.count_by_status(session)
    for status in ("pending", "done", "parked"):
        click.echo(f"{status:<8} {counts.get(status, 0)}")


@webhooks.command("replay")
@click.option("--failed", is_flag=True, required=True, help="Re-run the parked (failed) events.")
@click.option("--shop", "domain", default=None, help="Only this shop's events.")
def webhooks_replay(failed: bool, domain: str | None) -> None:
    """Re-run the parked events now, one more attempt each, and report how they went (exit 1
    if any failed again)."""
    settings = load_command_settings()
    with open_store(settings) as engine:
        with Session(engine) as session:
            shop = None if domain is None else shop_or_fail(session, domain)
            ids = inbox.parked_ids(session, None if shop is None else shop.domain)
        click.echo(f"{len(ids)} parked events to re-run")
        from webhooks.processor import Processor

        processor = Processor(engine, max_attempts=settings.processor_max_attempts)
        counts = processor.rerun_parked(ids)
    outcome = counts.by_outcome
    click.echo(
        f"re-ran {counts.total}: {outcome['done']} done, {outcome['retry']} failed again (to be "
        f"retried), {outcome['parked']} failed again and parked"
    )
    if counts.total > outcome["done"]:
        sys.exit(1)


@main.command()
@click.option("--shop", "domain", required=True, help="The shop's NAME.myshopify.com domain.")
@click.option(
    "--changed",
    is_flag=True,
    help="Only re-score customers whose orders changed since their last score, with the last "
    "full run's models (what the scheduler does every few minutes).",
)
def recompute(domain: str, changed: bool) -> None:
    """Refit the shop's models and score every customer (or only the changed ones): the refit
    (or rescore) job run now, under the lease it shares with the scheduled ones, and recorded."""
    from jobs.shop_settings import ShopSettingsError, scoring_settings

    settings = load_command_settings()
    with open_store(settings) as engine:
        with Session(engine, expire_on_commit=False) as session:
            shop = shop_or_fail(session, domain)
        try:
            scoring_settings(shop)  # refused before a failed run is recorded
        except ShopSettingsError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(
            f"{'re-scoring changed customers' if changed else 'recomputing'} {shop.domain} ...",
            err=True,
        )
        result = run_now(settings, engine, shop, "rescore" if changed else "refit")
    click.echo(json.dumps(run_summary(result)))


@main.command()
@click.option("--shop", "domain", required=True, help="The shop's NAME.myshopify.com domain.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what would change (counts by tag, a sample of customers with the reasons) "
    "without calling Shopify.",
)
@click.option(
    "--undo",
    "undo",
    type=click.IntRange(1, MAX_ID),  # a run id the database can hold
    metavar="RUN",
    help="Instead, take back what push run RUN changed on customers (`clvsync jobs runs` lists "
    "them); the shop's push must be paused first (dry_run=true).",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="With --dry-run: the plan as one JSON object (a real push always prints JSON).",
)
def push(domain: str, dry_run: bool, undo: int | None, as_json: bool) -> None:
    """Push the changed tags and metafields to the store now (the scheduled push, run once)."""
    from plugin.cli_push import run_writeback

    settings = load_command_settings()
    with open_store(settings) as engine:
        with Session(engine, expire_on_commit=False) as session:
            shop = shop_or_fail(session, domain)
        run_writeback(engine, settings, shop, dry_run, as_json, undo)


@main.command()
@click.option("--shop", "domain", required=True, help="The shop's NAME.myshopify.com domain.")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S"]),
    help="Only orders updated on or after this day (UTC); all of them by default.",
)
@click.option("--json", "as_json", is_flag=True, help="The result as one JSON object.")
def backfill(domain: str, since: datetime | None, as_json: bool) -> None:
    """Read the shop's order history from the store (one bulk query) into the ledger. Safe to
    run again: an order the ledger holds in the same or a newer version is left as it is."""
    from plugin.cli_backfill import run_backfill

    settings = load_command_settings()
    with open_store(settings) as engine:
        with Session(engine, expire_on_commit=False) as session:
            shop = shop_or_fail(session, domain)
        run_backfill(engine, settings, shop, since and since.replace(tzinfo=UTC), as_json)


main.add_command(backtest)
main.add_command(devstore)
main.add_command(demo)
main.add_command(redact)
main.add_command(jobs_group)


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply the migrations up to the newest schema."""
    with open_store(load_command_settings()):
        click.echo("schema is up to date")


if __name__ == "__main__":
    main()
