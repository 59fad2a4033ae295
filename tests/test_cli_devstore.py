"""`clvsync devstore serve` runs a generated store's Admin API on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from plugin.devstore.gen_config import GeneratorConfig
from plugin.serving import free_port
from tests.test_cli import assert_port_in_use_error, cli_process, served_output, taken_port

ROOT = Path(__file__).resolve().parent.parent
QUERY = """{
  shop { myshopifyDomain }
  customers(first: 250) { nodes { id } }
  orders(first: 1) { nodes { id } }
}"""


@pytest.mark.parametrize("customers", [40, 1])
def test_devstore_serve_generated_store_answers_graphql(customers: int) -> None:
    # given the dev store started from the CLI with a small generated store (one customer is a
    # store, not an empty one)
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "plugin.cli",
            "devstore",
            "serve",
            "--port",
            str(port),
            "--customers",
            str(customers),
            "--seed",
            "1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/devstore/health").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline and process.poll() is None, "did not start"
            time.sleep(0.1)
        # when its customers are queried with the token it printed
        response = httpx.post(
            f"http://127.0.0.1:{port}/admin/api/2026-10/graphql.json",
            headers={"X-Shopify-Access-Token": "shpat_devstore_local_token"},
            json={"query": QUERY},
        )
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    # then the generated customers are there, with their orders, in the generated shop
    data = response.json()["data"]
    assert len(data["customers"]["nodes"]) == customers and data["orders"]["nodes"]
    shop = GeneratorConfig().shop_domain
    assert data["shop"]["myshopifyDomain"] == shop
    # and it said where, and with which token
    assert (
        f"dev store {shop}: POST http://127.0.0.1:{port}/admin/api/2026-10/graphql.json "
        "with X-Shopify-Access-Token: shpat_devstore_local_token"
    ) in stderr


def test_devstore_serve_names_the_token_its_config_accepts(tmp_path: Path) -> None:
    # given a config that accepts a token of its own
    config = tmp_path / "devstore.json"
    config.write_text(json.dumps({"access_tokens": {"shpat_mine": "clvsync-dev.myshopify.com"}}))
    # when served, then the line that says how to call it names that token
    args = ["devstore", "serve", "--customers", "0", "--config", str(config)]
    output = served_output(f"sqlite:///{tmp_path / 'unused.db'}", args, "/devstore/health", "INFO")
    assert "with X-Shopify-Access-Token: shpat_mine" in output, output


def test_devstore_serve_on_a_port_in_use_exits_1_before_generating(sqlite_path: Path) -> None:
    # when the dev store is started on a port in use
    with taken_port() as port:
        done = cli_process(f"sqlite:///{sqlite_path}", "devstore", "serve", "--port", str(port))
    # then it says so and stops, before generating its store
    assert_port_in_use_error(done, port)
    assert "generating" not in done.stderr


@pytest.mark.parametrize(("level", "logged"), [("INFO", True), ("WARNING", False)])
def test_devstore_serve_logs_uvicorn_and_its_access_lines_at_the_level_asked(
    sqlite_path: Path, level: str, logged: bool
) -> None:
    # when the dev store is served at a level, and asked for its health
    url = f"sqlite:///{sqlite_path}"
    args = ["devstore", "serve", "--customers", "0"]
    output = served_output(url, args, "/devstore/health", level)
    # then uvicorn's own lines and its access lines are there at INFO, and only then
    assert ("Started server process" in output) is logged, output
    assert ('"GET /devstore/health HTTP/1.1" 200' in output) is logged, output
