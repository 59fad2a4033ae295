"""The shop's currency: read from the store with its time zone, kept, and a change of it told."""

# ruff: noqa: F811  (the dev store's fixtures are imported, and used by name)

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from jobs.shop_profile import read_shop_profile
from plugin.devstore.config import DEFAULT_TOKEN
from plugin.devstore.state import DevStoreState
from plugin.store import ledger, shops
from plugin.store.models import Shop
from tests.devstore.conftest import (  # noqa: F401
    DevStoreFactory,
    anyio_backend,
    devstore_factory,
    live_switch,
)
from tests.helpers import add_shop, order_payload
from tests.test_backfill import backfill, http, shop_id  # noqa: F401
from tests.test_shop_time_zone import zone_client
from webhooks.payloads import parse_order

pytestmark = pytest.mark.anyio

WARNED = "the store's currency is now"


def shop_currency(engine: Engine, domain: str) -> str | None:
    with Session(engine) as session:
        shop = shops.get_shop(session, domain)
        assert shop is not None
        return shop.currency


def add_orders(engine: Engine, shop: Shop, *order_ids: int, currency: str = "USD") -> None:
    """Orders delivered by webhook, their shop money in `currency`."""
    with Session(engine) as session, session.begin():
        held = session.get(Shop, shop.id)
        assert held is not None
        for order_id in order_ids:
            payload = order_payload(order_id) | {"currency": currency}
            assert ledger.apply_order(session, held, parse_order(payload))


async def read_answered(engine: Engine, shop: Shop, answer: dict[str, Any]) -> None:
    """`read_shop_profile` of a store that answers `answer`."""
    http, client = zone_client(httpx.Response(200, json=answer))
    async with http:
        await read_shop_profile(engine, shop, client)


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


async def test_backfill_keeps_the_stores_currency_over_the_first_orders_and_warns_of_them(
    engine: Engine,
    devstore_factory: DevStoreFactory,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # given a shop whose currency was taken from its first orders (USD, by webhook), a later
    # one in New Zealand dollars, and a store that now sells in those
    live = devstore_factory(DevStoreState(currency_code="NZD"))
    domain = live.state.domain
    shop = add_shop(engine, domain, DEFAULT_TOKEN)
    add_orders(engine, shop, 1001, 1002)
    add_orders(engine, shop, 1003, currency="NZD")
    assert shop_currency(engine, domain) == "USD"
    # when it is backfilled
    with caplog.at_level(logging.INFO, logger="jobs.shop_profile"):
        await backfill(engine, http, live)
    # then the store's currency is kept, and the operator is told of the orders held in the
    # old one, which are summed unconverted
    assert shop_currency(engine, domain) == "NZD"
    assert warnings(caplog) == [
        f"{domain}: the store's currency is now NZD (was USD): 2 orders held in USD are summed "
        "as they are, not converted"
    ]
    # and when the next backfill reads the same currency, it says nothing more of it
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="jobs.shop_profile"):
        await backfill(engine, http, live)
    assert shop_currency(engine, domain) == "NZD"
    assert not [r for r in caplog.records if "currency" in r.getMessage()]


async def test_a_first_read_or_a_change_with_no_order_in_another_currency_only_informs(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # given a shop with no currency yet
    caplog.set_level(logging.INFO, logger="jobs.shop_profile")
    shop = add_shop(engine, "z.myshopify.com")
    answer = {"data": {"shop": {"ianaTimezone": "Europe/Paris", "currencyCode": "EUR"}}}
    # when the store's currency is read, then it is kept, without a warning
    await read_answered(engine, shop, answer)
    assert shop_currency(engine, "z.myshopify.com") == "EUR"
    assert warnings(caplog) == []
    # and when it changes while the shop holds no order, the change is told at info
    answer["data"]["shop"]["currencyCode"] = "GBP"
    await read_answered(engine, shop, answer)
    assert shop_currency(engine, "z.myshopify.com") == "GBP"
    assert warnings(caplog) == []
    assert "z.myshopify.com: the store's currency is now GBP (was EUR)" in caplog.messages


@pytest.mark.parametrize(
    "answer",
    [
        {"errors": [{"message": "Field 'currencyCode' doesn't exist on type 'Shop'"}]},
        {"data": {"shop": {"ianaTimezone": "Europe/Paris"}}},
        {"data": {"shop": {"ianaTimezone": "Europe/Paris", "currencyCode": "usd dollars"}}},
        {"data": {"shop": {"ianaTimezone": "Europe/Paris", "currencyCode": 840}}},
        {"data": {"shop": None}},
    ],
    ids=["refused-query", "no-code", "not-a-code", "a-number", "no-shop"],
)
async def test_an_answer_without_a_currency_code_keeps_the_one_known(
    engine: Engine, answer: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # given a shop known to sell in US dollars, with an order
    shop = add_shop(engine, "z.myshopify.com")
    add_orders(engine, shop, 1001)
    # when the store's answer names no currency code
    with caplog.at_level(logging.WARNING, logger="jobs.shop_profile"):
        await read_answered(engine, shop, answer)
    # then the currency known stays, and the log says it was not read
    assert shop_currency(engine, "z.myshopify.com") == "USD"
    assert any("currenc" in message and "unchanged" in message for message in warnings(caplog))
