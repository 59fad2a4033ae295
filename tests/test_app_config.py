"""shopify.app.toml and the migrations agree with what the code handles and declares."""

from __future__ import annotations

import tomllib
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine
from sqlmodel import SQLModel

from webhooks.handlers import HANDLERS

ROOT = Path(__file__).resolve().parent.parent


def test_app_toml_subscribes_every_handled_topic_to_webhooks() -> None:
    config = tomllib.loads((ROOT / "shopify.app.toml").read_text())
    assert config["embedded"] is True and config["webhooks"]["api_version"] == "2026-10"
    subscriptions = config["webhooks"]["subscriptions"]
    topics = {t for s in subscriptions for t in s.get("topics", [])}
    compliance = {t for s in subscriptions for t in s.get("compliance_topics", [])}
    assert {s["uri"] for s in subscriptions} == {"/webhooks"}
    assert compliance == {"customers/data_request", "customers/redact", "shop/redact"}
    assert topics | compliance == set(HANDLERS)
    scopes = set(config["access_scopes"]["scopes"].split(","))
    assert scopes == {
        "read_orders",
        "read_customers",
        "write_customers",
        "read_products",
        "write_products",
    }


def test_migrations_build_exactly_the_models_schema(engine: Engine) -> None:
    # the engine fixture's schema was built by the migrations alone
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, SQLModel.metadata) == []
