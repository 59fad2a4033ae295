"""The shop's time zone and currency, read from the store. Purchase days are the shop's
calendar days (`plugin.domain.shop_days`), and money is summed in its currency (DESIGN: the
orders' `shop_money`). The backfill reads them before the orders, the reconcile before the
customers, so a zone the merchant changes in the admin is taken within a day, and a change of
currency is seen: until the store is read, the shop's currency is its first order's.

The ledger sums each order's `shop_money` as it is: an order placed before a change of the
store's currency stays in the old currency, is not converted, and is counted among the new
one's amounts. The log says how many orders that is.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import anyio
from sqlalchemy import Engine
from sqlmodel import Session

from plugin.domain.shop_days import known_zone
from plugin.shopify.client import AdminClient, QueryError
from plugin.store.models import Shop
from plugin.store.shops import orders_in_other_currencies, set_currency, set_time_zone
from plugin.wording import counted

log = logging.getLogger(__name__)

PROFILE_QUERY = "query ShopProfile { shop { ianaTimezone currencyCode } }"
_CURRENCY_CODE = re.compile(r"[A-Z]{3}")  # ISO 4217, as Shopify's CurrencyCode enum


async def read_shop_profile(engine: Engine, shop: Shop, client: AdminClient) -> str | None:
    """Read `shop { ianaTimezone currencyCode }`, keep both, and return the shop's zone from
    now on. Where the store's answer has no zone this machine's tz database knows, or no
    currency code (or the query was refused: the job that reads them has other work), what was
    known before stays (UTC if no zone), and the log says so. A refused token is not passed
    over: it stops the job, as any call's."""
    assert shop.id is not None
    try:
        data = await client.execute(PROFILE_QUERY)
    except QueryError as exc:
        log.warning(
            "%s: the store's time zone and currency were not read (%s): both unchanged",
            shop.domain,
            exc,
        )
        return shop.iana_timezone
    fields = data.get("shop")
    fields = fields if isinstance(fields, dict) else {}
    currency = fields.get("currencyCode")
    if isinstance(currency, str) and _CURRENCY_CODE.fullmatch(currency):
        await anyio.to_thread.run_sync(_keep_currency, engine, shop, currency)
    else:
        log.warning("%s: the store's answer named no currency: currency unchanged", shop.domain)
    return await _keep_zone(engine, shop, fields.get("ianaTimezone"))


async def _keep_zone(engine: Engine, shop: Shop, zone: Any) -> str | None:
    assert shop.id is not None
    if not isinstance(zone, str):
        log.warning("%s: the store's answer named no time zone: days unchanged", shop.domain)
        return shop.iana_timezone
    if known_zone(zone) is None:
        log.warning(
            "%s: the store's time zone %r is unknown here: days unchanged", shop.domain, zone
        )
        return shop.iana_timezone
    if await anyio.to_thread.run_sync(_keep, engine, shop.id, zone):
        log.info("%s: time zone %s: the shop's days from the next recompute", shop.domain, zone)
    return zone


def _keep(engine: Engine, shop_id: int, zone: str) -> bool:
    with Session(engine) as session, session.begin():
        return set_time_zone(session, shop_id, zone)


def _keep_currency(engine: Engine, shop: Shop, currency: str) -> None:
    assert shop.id is not None
    with Session(engine) as session, session.begin():
        before = set_currency(session, shop.id, currency)
        others = orders_in_other_currencies(session, shop.id, currency) if before else {}
    if others:
        log.warning(
            "%s: the store's currency is now %s (was %s): %s held in %s are summed as they "
            "are, not converted",
            shop.domain,
            currency,
            before,
            counted(sum(others.values()), "order"),
            ", ".join(sorted(others)),
        )
    elif before:
        log.info("%s: the store's currency is now %s (was %s)", shop.domain, currency, before)
