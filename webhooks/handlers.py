"""One handler per topic: map a (minimised) payload to ledger changes, and nothing more."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlmodel import Session

from plugin.store import ledger, shops
from plugin.store.models import DataRequest, InboxEvent, Shop
from webhooks.payloads import (
    ORDER_TOPICS,
    PayloadError,
    parse_id,
    parse_order,
    parse_refund,
    parse_time,
)

log = logging.getLogger(__name__)

Handler = Callable[[Session, Shop, Mapping[str, Any], InboxEvent], None]
# Applies several events of one shop at once, to the same effect as their handlers one by one.
BatchHandler = Callable[[Session, Shop, Sequence[Mapping[str, Any]]], None]


def _shop_id(shop: Shop) -> int:
    assert shop.id is not None
    return shop.id


def _customer_id(payload: Mapping[str, Any], field: str = "customer.id") -> int:
    return parse_id(payload.get("id"), field)


def on_order(session: Session, shop: Shop, payload: Mapping[str, Any], _: InboxEvent) -> None:
    ledger.apply_order(session, shop, parse_order(payload))


def on_orders(session: Session, shop: Shop, payloads: Sequence[Mapping[str, Any]]) -> None:
    """Orders' versions of one shop, applied together: what `on_order` does for each, in a few
    statements for the lot (order webhooks are most of a busy shop's: an order is created,
    paid, then updated as it is fulfilled)."""
    versions = [parse_order(payload) for payload in payloads]
    ledger.apply_order_batch(session, shop, versions, same_stamp_wins=True)


def on_refund(session: Session, shop: Shop, payload: Mapping[str, Any], _: InboxEvent) -> None:
    ledger.apply_refund(session, shop, parse_refund(payload))


def on_refunds(session: Session, shop: Shop, payloads: Sequence[Mapping[str, Any]]) -> None:
    """refunds/create of one shop, applied together: what `on_refund` does for each."""
    ledger.apply_refunds(session, shop, [parse_refund(payload) for payload in payloads])


def _customer_record(payload: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
    return _customer_id(payload, "id"), {
        "created_at": parse_time(payload["created_at"], "created_at")
        if payload.get("created_at")
        else None,
        "updated_at": parse_time(payload["updated_at"], "updated_at")
        if payload.get("updated_at")
        else None,
        "state": payload.get("state") if isinstance(payload.get("state"), str) else None,
    }


def on_customer(session: Session, shop: Shop, payload: Mapping[str, Any], _: InboxEvent) -> None:
    ledger.upsert_customer(session, _shop_id(shop), *_customer_record(payload))


def on_customers(session: Session, shop: Shop, payloads: Sequence[Mapping[str, Any]]) -> None:
    """customers/create and customers/update of one shop, applied together (in arrival order,
    as `on_customer` would one by one: a shop's new customers come with their first orders)."""
    records = [_customer_record(payload) for payload in payloads]
    ledger.upsert_customers(session, _shop_id(shop), records)


def on_customer_delete(
    session: Session, shop: Shop, payload: Mapping[str, Any], event: InboxEvent
) -> None:
    at = event.triggered_at or event.received_at
    ledger.mark_customer_deleted(session, _shop_id(shop), _customer_id(payload, "id"), at)


def _addressed_to(shop: Shop, payload: Mapping[str, Any], *fields: str) -> None:
    """The payload names the shop that sent it (the first of `fields` present).

    Shopify signs the body, not the headers: a captured signed body sent again under another
    X-Shopify-Topic or X-Shopify-Shop-Domain verifies too. The topics that delete or discard
    must act only on a payload that is theirs, for that shop (an order's body names no shop).
    """
    named = next((payload[f] for f in fields if payload.get(f)), None)
    try:
        same = isinstance(named, str) and shops.normalise_domain(named) == shop.domain
    except shops.ShopDomainError:
        same = False
    if not same:
        raise PayloadError(
            f"{' or '.join(fields)} is {named!r}, not {shop.domain}: not this shop's payload"
        )


# What tells the compliance payloads apart (SHOPIFY.md): keys one topic's payload has and
# another's never does. A body sent again under another of these topics must not act as that
# topic: a data request must never delete anything. (A key a topic's payload should have is
# not required: were Shopify to leave out an empty orders_to_redact, a redact must still act.)
_NEVER_IN: dict[str, frozenset[str]] = {
    "customers/data_request": frozenset({"orders_to_redact"}),
    "customers/redact": frozenset({"data_request", "orders_requested"}),
    "shop/redact": frozenset({"customer", "data_request", "orders_requested", "orders_to_redact"}),
}


def _shaped_as(topic: str, payload: Mapping[str, Any]) -> None:
    """The payload is not another compliance topic's, sent again under `topic`."""
    foreign = sorted(_NEVER_IN[topic] & payload.keys())
    if foreign:
        raise PayloadError(f"not a {topic} payload (it has {', '.join(foreign)}): nothing done")


class ShopStillInstalledError(Exception):
    """shop/redact for a shop that is installed: nothing is deleted (retried, then parked)."""


def _compliance_customer(payload: Mapping[str, Any]) -> int:
    customer = payload.get("customer")
    if not isinstance(customer, Mapping):
        raise PayloadError("customer: missing")
    return _customer_id(customer)


def on_data_request(
    session: Session, shop: Shop, payload: Mapping[str, Any], event: InboxEvent
) -> None:
    _addressed_to(shop, payload, "shop_domain")
    _shaped_as("customers/data_request", payload)
    customer_id = _compliance_customer(payload)
    request = payload.get("data_request")
    request_id = request.get("id") if isinstance(request, Mapping) else None
    session.add(
        DataRequest(
            shop_id=_shop_id(shop),
            customer_id=customer_id,
            request_id=None if request_id is None else str(request_id)[:64],
            received_at=event.received_at,
        )
    )
    log.warning(
        "data request for a customer of %s: answer it with "
        "`clvsync export --shop %s --customer %d`",
        shop.domain,
        shop.domain,
        customer_id,
    )


def on_customer_redact(
    session: Session, shop: Shop, payload: Mapping[str, Any], _: InboxEvent
) -> None:
    _addressed_to(shop, payload, "shop_domain")
    _shaped_as("customers/redact", payload)
    raw_orders = payload.get("orders_to_redact") or []
    if not isinstance(raw_orders, list):
        raise PayloadError("orders_to_redact: expected a list of order ids")
    order_ids = [parse_id(o, "orders_to_redact[]") for o in raw_orders]
    ledger.redact_customer(session, _shop_id(shop), _compliance_customer(payload), order_ids)


def on_shop_redact(
    session: Session, shop: Shop, payload: Mapping[str, Any], event: InboxEvent
) -> None:
    """Shopify sends it 48 hours after an uninstall. For a shop that is installed (never
    uninstalled, or installed again since) nothing is deleted: the event is retried, in case
    its app/uninstalled is late, then parked for the operator."""
    _addressed_to(shop, payload, "shop_domain")
    _shaped_as("shop/redact", payload)
    if shop.uninstalled_at is None:
        raise ShopStillInstalledError(
            f"shop/redact for {shop.domain}, which is installed: nothing deleted"
        )
    shops.forget_shop(session, shop, keep_event_id=event.id)
    log.info("shop/redact: deleted everything held for %s", shop.domain)


def on_uninstalled(
    session: Session, shop: Shop, payload: Mapping[str, Any], event: InboxEvent
) -> None:
    _addressed_to(shop, payload, "myshopify_domain", "domain")
    if shops.uninstall_shop(session, shop, event.triggered_at or event.received_at):
        log.info("app/uninstalled: %s marked uninstalled, its token discarded", shop.domain)


# Topics whose handlers change or delete the shop row itself.
SHOP_TOPICS = frozenset({"shop/redact", "app/uninstalled"})

HANDLERS: dict[str, Handler] = {
    **dict.fromkeys(ORDER_TOPICS, on_order),
    "refunds/create": on_refund,
    "customers/create": on_customer,
    "customers/update": on_customer,
    "customers/delete": on_customer_delete,
    "customers/data_request": on_data_request,
    "customers/redact": on_customer_redact,
    "shop/redact": on_shop_redact,
    "app/uninstalled": on_uninstalled,
}

BATCH_HANDLERS: dict[str, BatchHandler] = {
    **dict.fromkeys(ORDER_TOPICS, on_orders),
    "refunds/create": on_refunds,
    "customers/create": on_customers,
    "customers/update": on_customers,
}
