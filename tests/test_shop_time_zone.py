"""The shop's time zone: read from the store, kept, and the days the figures count are its own."""

# ruff: noqa: F811  (the dev store's fixtures are imported, and used by name)

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from alembic import command
from sqlalchemy import Engine, func, select, text
from sqlmodel import Session

from jobs.plan import plan_changes
from jobs.recompute import full_recompute, rescore_changed
from jobs.shop_profile import read_shop_profile
from jobs.shop_settings import shop_writeback_settings
from plugin.devstore.config import DEFAULT_TOKEN
from plugin.devstore.gen_config import GeneratorConfig
from plugin.devstore.generator import generate_store
from plugin.devstore.state import DevStoreState
from plugin.shopify.client import AdminClient, AuthError
from plugin.store import ledger, shops
from plugin.store.db import alembic_config, make_engine, upgrade
from plugin.store.models import Order, Shop
from tests.devstore.conftest import (  # noqa: F401
    DevStoreFactory,
    LiveDevStore,
    anyio_backend,
    devstore_factory,
    live_switch,
)
from tests.helpers import add_ledger_order, add_shop, order_payload
from tests.test_backfill import backfill, http, shop_id  # noqa: F401
from tests.test_cli import run
from tests.test_recompute import load_store, scores_of
from webhooks.payloads import parse_order

NEW_YORK = "America/New_York"
# the figures two customers with the same purchase days must share
SHARED = (
    "p_alive",
    "expected_purchases",
    "predicted_clv",
    "recency_score",
    "frequency_score",
    "monetary_score",
    "segment",
)


def shop_zone(engine: Engine, domain: str) -> str | None:
    with Session(engine) as session:
        shop = shops.get_shop(session, domain)
        assert shop is not None
        return shop.iana_timezone


def set_zone(engine: Engine, shop: Shop, zone: str | None) -> Shop:
    with Session(engine, expire_on_commit=False) as session, session.begin():
        held = session.get(Shop, shop.id)
        assert held is not None
        held.iana_timezone = zone
        return held


def zoned_store(factory: DevStoreFactory, zone: str) -> LiveDevStore:
    """A small generated store, live, set in `zone`."""
    store = generate_store(GeneratorConfig(customers=20), seed=3)
    state = DevStoreState(domain=store.shop_domain, time_zone=zone)
    state.load(products=store.products, customers=store.customers, orders=store.orders)
    return factory(state)


@pytest.mark.anyio
async def test_backfill_keeps_the_stores_time_zone_and_its_later_change(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a store in Kolkata's zone, registered without one
    live = zoned_store(devstore_factory, "Asia/Kolkata")
    domain = live.state.domain
    add_shop(engine, domain, DEFAULT_TOKEN)
    assert shop_zone(engine, domain) is None
    # when it is backfilled, then the zone is kept
    await backfill(engine, http, live)
    assert shop_zone(engine, domain) == "Asia/Kolkata"
    # when the merchant moves the store to New York's zone and the next backfill runs
    live.state.time_zone = NEW_YORK
    await backfill(engine, http, live)
    # then that zone is kept
    assert shop_zone(engine, domain) == NEW_YORK


@pytest.mark.anyio
async def test_a_zone_unknown_here_is_not_kept_and_the_backfill_goes_on(
    engine: Engine, devstore_factory: DevStoreFactory, http: httpx.AsyncClient
) -> None:
    # given a shop known to be in New York, whose store now names a zone no tz database has
    live = zoned_store(devstore_factory, "Mars/Olympus_Mons")
    set_zone(engine, add_shop(engine, live.state.domain, DEFAULT_TOKEN), NEW_YORK)
    # when it is backfilled
    counts = await backfill(engine, http, live)
    # then the orders are read and the zone known before stays
    assert counts["orders_applied"] > 0
    assert shop_zone(engine, live.state.domain) == NEW_YORK


def test_recompute_counts_purchase_days_on_the_shops_calendar(engine: Engine) -> None:
    # given a scored-size shop and two new customers, each with two orders 20 minutes apart
    # on July 1st in New York: A's at 7:50 and 8:10 pm (either side of 00:00 UTC), B's at
    # 11:50 am and 12:10 pm
    _, shop, as_of = load_store(engine, 700, 11)
    a_first = datetime(2025, 7, 1, 23, 50, tzinfo=UTC)
    b_first = datetime(2025, 7, 1, 15, 50, tzinfo=UTC)
    with Session(engine) as session, session.begin():
        for order_id, customer, at in (
            (90_000_001, 8_000_001, a_first),
            (90_000_002, 8_000_001, a_first + timedelta(minutes=20)),
            (90_000_003, 8_000_002, b_first),
            (90_000_004, 8_000_002, b_first + timedelta(minutes=20)),
        ):
            payload = order_payload(order_id, customer_id=customer)
            stamps = {"created_at": at.isoformat(), "processed_at": at.isoformat()}
            ledger.apply_order(
                session, shop, parse_order(payload | stamps | {"updated_at": at.isoformat()})
            )

    def figures() -> tuple[dict[str, object], dict[str, object]]:
        scores = scores_of(engine)
        a, b = scores[8_000_001], scores[8_000_002]
        return {k: getattr(a, k) for k in SHARED}, {k: getattr(b, k) for k in SHARED}

    # when scored with UTC days, then A counts as a repeat buyer and B does not (the fault)
    full_recompute(engine, shop, as_of)
    utc_a, utc_b = figures()
    assert utc_a != utc_b
    # when scored on the shop's calendar (New York)
    shop = set_zone(engine, shop, NEW_YORK)
    full_recompute(engine, shop, as_of)
    # then both bought once, on one day, and get the same figures
    local_a, local_b = figures()
    assert local_a == local_b
    assert local_a["frequency_score"] == utc_b["frequency_score"]


def test_expected_next_order_date_pushed_is_the_shops_date(engine: Engine) -> None:
    # given a shop scored in Honolulu's zone (10 hours behind UTC: most moments of the evening
    # there are the next day in UTC)
    _, shop, as_of = load_store(engine, 700, 11)
    shop = set_zone(engine, shop, "Pacific/Honolulu")
    full_recompute(engine, shop, as_of)
    zone = ZoneInfo("Pacific/Honolulu")
    # when the push is planned
    plan = plan_changes(engine, shop, shop_writeback_settings(shop))
    # then each expected next order date is the Honolulu date of the moment held
    held = {
        s.customer_id: s.expected_next_order_at
        for s in scores_of(engine).values()
        if s.expected_next_order_at is not None
    }
    dates = {
        item.change.customer_id: dict(item.change.set_metafields)["expected_next_order_date"]
        for item in plan.items
        if "expected_next_order_date" in dict(item.change.set_metafields)
    }
    assert dates and set(dates) <= set(held)
    assert all(dates[c] == held[c].astimezone(zone).date().isoformat() for c in dates)
    # and some of them differ from the UTC date (the case that used to be wrong)
    assert any(dates[c] != held[c].astimezone(UTC).date().isoformat() for c in dates)


def test_migration_0011_adds_the_zone_and_its_downgrade_keeps_every_shops_rows(
    tmp_path: Path,
) -> None:
    # given a database at 0010 with a shop and an order
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    upgrade(engine, "0010")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO shops (id, domain, scopes, installed_at, needs_reauth, settings,"
                " definitions_version) VALUES (1, 'z.myshopify.com', '', '2026-01-01', 0, '{}', 0)"
            )
        )
    with Session(engine) as session, session.begin():
        add_ledger_order(session, 1, 5, datetime(2026, 1, 2, tzinfo=UTC), [(1, None)])
    # when migrated up, the zone is there, unknown
    upgrade(engine)
    with Session(engine) as session:
        shop = session.get(Shop, 1)
        assert shop is not None and shop.iana_timezone is None
    # when migrated down again, then the order is still held (no copy of `shops` cascaded)
    command.downgrade(alembic_config(engine), "0010")
    with engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(Order)).scalar_one() == 1
        columns = connection.execute(text("SELECT * FROM shops")).keys()
    assert "iana_timezone" not in columns
    engine.dispose()


def test_shop_list_shows_the_zone_read_and_a_dash_before(engine: Engine, migrated_url: str) -> None:
    # given one shop whose zone was read and one not yet backfilled
    set_zone(engine, add_shop(engine, "zoned.myshopify.com"), NEW_YORK)
    add_shop(engine, "fresh.myshopify.com")
    # when the shops are listed
    code, out, _ = run(migrated_url, "shop", "list")
    # then each row shows its zone in the time_zone column, or "-"
    assert code == 0
    header, *rows = out.splitlines()
    column = header.split().index("time_zone")
    zones = {row.split()[0]: row.split()[column] for row in rows if row}
    assert zones["zoned.myshopify.com"] == NEW_YORK
    assert zones["fresh.myshopify.com"] == "-"


def test_rescore_on_the_night_clocks_go_back_counts_an_order_of_the_first_pass(
    engine: Engine,
) -> None:
    # given a New York shop refitted at 02:00 UTC on its fall-back night
    _, shop, _ = load_store(engine, 300, 11)
    shop = set_zone(engine, shop, NEW_YORK)
    full_recompute(engine, shop, datetime(2026, 11, 1, 2, tzinfo=UTC))
    customer = min(scores_of(engine))
    before = scores_of(engine)[customer].historical_clv
    # when the customer orders at 1:50 am summer time (05:50 UTC) and the rescore runs twenty
    # minutes later, at 1:10 am winter time
    at = datetime(2026, 11, 1, 5, 50, tzinfo=UTC)
    stamps = {key: at.isoformat() for key in ("created_at", "processed_at", "updated_at")}
    payload = order_payload(99_000_001, customer_id=customer, total="250.00") | stamps
    with Session(engine) as session, session.begin():
        ledger.apply_order(session, shop, parse_order(payload))
    rescore_changed(engine, shop, datetime(2026, 11, 1, 6, 10, tzinfo=UTC))
    # then the order counts (it was left out as placed after the run, the score then current)
    assert scores_of(engine)[customer].historical_clv == pytest.approx(before + 250.0)


def zone_client(answer: httpx.Response) -> tuple[httpx.AsyncClient, AdminClient]:
    http = httpx.AsyncClient(transport=httpx.MockTransport(lambda request: answer))
    client = AdminClient(
        http, "z.myshopify.com", "shpat_x", api_version="2026-10", admin_url="http://mock"
    )
    return http, client


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [
        {"errors": [{"message": "Field 'ianaTimezone' doesn't exist on type 'Shop'"}]},
        {"data": {"shop": {"ianaTimezone": "America"}}},  # a directory of the tz database
        {"data": {"shop": {"ianaTimezone": "Mars/Olympus_Mons"}}},
        {"data": {"shop": None}},
    ],
    ids=["refused-query", "directory-name", "unknown-zone", "no-shop"],
)
async def test_read_shop_profile_an_answer_without_a_usable_zone_keeps_the_one_known(
    engine: Engine, answer: dict[str, object]
) -> None:
    # given a shop known to be in New York
    shop = set_zone(engine, add_shop(engine, "z.myshopify.com"), NEW_YORK)
    http, client = zone_client(httpx.Response(200, json=answer))
    # when the store's answer gives no zone this machine knows
    async with http:
        zone = await read_shop_profile(engine, shop, client)
    # then the job goes on with the zone known before, which stays stored
    assert zone == NEW_YORK
    assert shop_zone(engine, "z.myshopify.com") == NEW_YORK


@pytest.mark.anyio
async def test_read_shop_profile_a_refused_token_stops_the_job(engine: Engine) -> None:
    shop = add_shop(engine, "z.myshopify.com")
    http, client = zone_client(httpx.Response(401, text="Invalid API key or access token"))
    async with http:
        with pytest.raises(AuthError):
            await read_shop_profile(engine, shop, client)
