"""The shop's time zone, read from the store: purchase days are the shop's calendar days
(`plugin.domain.shop_days`). The backfill reads it before the orders, the reconcile before the
customers, so a zone the merchant changes in the admin is taken within a day."""

from __future__ import annotations

import logging
from typing import Any

import anyio
from sqlalchemy import Engine
from sqlmodel import Session

from plugin.domain.shop_days import known_zone
from plugin.shopify.client import AdminClient, QueryError
from plugin.store.models import Shop
from plugin.store.shops import set_time_zone

log = logging.getLogger(__name__)

ZONE_QUERY = "query ShopTimeZone { shop { ianaTimezone } }"


async def read_time_zone(engine: Engine, shop: Shop, client: AdminClient) -> str | None:
    """Read `shop { ianaTimezone }`, keep it, and return the shop's zone from now on. Where
    the store's answer has no zone this machine's tz database knows (or the query was refused:
    the job that reads it has other work), the zone known before stays, or UTC if none, and
    the log says so. A refused token is not passed over: it stops the job, as any call's."""
    assert shop.id is not None
    try:
        zone = _zone_in(await client.execute(ZONE_QUERY))
    except QueryError as exc:
        log.warning("%s: the store's time zone was not read (%s): days unchanged", shop.domain, exc)
        return shop.iana_timezone
    if zone is None:
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


def _zone_in(data: dict[str, Any]) -> str | None:
    shop = data.get("shop")
    zone = shop.get("ianaTimezone") if isinstance(shop, dict) else None
    return zone if isinstance(zone, str) else None


def _keep(engine: Engine, shop_id: int, zone: str) -> bool:
    with Session(engine) as session, session.begin():
        return set_time_zone(session, shop_id, zone)
