"""`clvsync devstore serve`: the local stand-in for Shopify, on its own."""

from __future__ import annotations

from pathlib import Path

import click

from plugin.devstore.config import DEFAULT_TOKEN, DevStoreConfig
from plugin.devstore.gen_config import GeneratorConfig
from plugin.devstore.generator import generate_store
from plugin.devstore.server import create_devstore_app
from plugin.devstore.state import DevStoreState
from plugin.serving import run_server


@click.group()
def devstore() -> None:
    """The dev store: a local Shopify stand-in (Admin GraphQL subset) for demos and tests."""


@devstore.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8100, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--customers",
    default=1000,
    show_default=True,
    type=click.IntRange(min=0),
    help="Generate a store with this many customers (0: an empty store).",
)
@click.option("--seed", default=0, show_default=True, help="Seed of the generated store.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help=(
        "DevStoreConfig as JSON: bucket size, restore rate, throttling status, faults of the "
        "Admin API (fault_error_share, fault_drop_share, ...) and of staged uploads and bulk "
        "result files (fault_file_error_share, fault_file_cut_share, fault_file_cut_mode)."
    ),
)
def devstore_serve(
    host: str, port: int, customers: int, seed: int, config_path: Path | None
) -> None:
    """Serve a (generated) store's Admin GraphQL API until interrupted."""
    from plugin.cli import listen_or_fail, server_log_level

    try:
        config = DevStoreConfig.from_json_file(config_path) if config_path else DevStoreConfig()
    except ValueError as exc:  # from_dict checks each value's type: no TypeError gets past it
        raise click.BadParameter(str(exc), param_hint="--config") from None
    sock = listen_or_fail(host, port, "--port")  # before the store is generated
    generator = GeneratorConfig(customers=customers)
    state = DevStoreState(
        domain=generator.shop_domain,
        currency_code=generator.shop_currency,
        time_zone=generator.shop_time_zone,
    )
    if customers:
        click.echo(f"generating a store of {customers} customers (seed {seed}) ...", err=True)
        store = generate_store(generator, seed=seed)
        state.load(products=store.products, customers=store.customers, orders=store.orders)
    token = next(iter(config.access_tokens), DEFAULT_TOKEN)
    click.echo(
        f"dev store {state.domain}: POST http://{host}:{port}/admin/api/2026-10/graphql.json "
        f"with X-Shopify-Access-Token: {token}",
        err=True,
    )
    # serve_devstore's server, on the socket bound above
    app = create_devstore_app(state, config)
    run_server(app, sock, log_level=server_log_level(), ws="none")
