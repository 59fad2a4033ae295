"""Shops: registering, listing, uninstalling, and forgetting them."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from plugin.store.models import CustomerScore, InboxEvent, Order, QueuedJob, Shop
from plugin.store.tokens import TokenCipher, TokenDecryptionError

_SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")


class ShopDomainError(ValueError):
    """Not a shop's myshopify.com domain."""


def normalise_domain(domain: str) -> str:
    """`domain` lower-cased, checked against Shopify's anchored shop-name pattern."""
    candidate = domain.strip().lower()
    if not _SHOP_DOMAIN.fullmatch(candidate):
        raise ShopDomainError(
            f"{domain!r} is not a shop domain: expected NAME.myshopify.com "
            "(lower-case letters, digits and hyphens)"
        )
    return candidate


def get_shop(session: Session, domain: str) -> Shop | None:
    return session.exec(select(Shop).where(Shop.domain == domain)).first()


def add_shop(session: Session, domain: str, token: str, cipher: TokenCipher, now: datetime) -> Shop:
    """Register (or re-install) a shop that uses a custom app's Admin API token.

    `installed_at` becomes `now` whenever a token is stored: an app/uninstalled triggered
    before it (still in the inbox when the shop was installed again) must not discard it."""
    domain = normalise_domain(domain)
    if not token.strip():
        raise ValueError("the access token is empty")
    shop = get_shop(session, domain) or Shop(domain=domain, installed_at=now)
    shop.access_token_encrypted = cipher.encrypt(token.strip())
    shop.installed_at, shop.uninstalled_at = now, None
    shop.needs_reauth = False
    session.add(shop)
    session.flush()
    return shop


def set_time_zone(session: Session, shop_id: int, zone: str) -> bool:
    """Keep the shop's IANA time zone; whether it changed (a merchant can change it)."""
    shop = session.get(Shop, shop_id)
    if shop is None or shop.iana_timezone == zone:
        return False
    shop.iana_timezone = zone
    session.add(shop)
    return True


def set_currency(session: Session, shop_id: int, code: str) -> str | None:
    """Keep the shop's currency, as the store names it; the one held before when it changed
    (None: unchanged, or none was held)."""
    shop = session.get(Shop, shop_id)
    if shop is None or shop.currency == code:
        return None
    before, shop.currency = shop.currency, code
    session.add(shop)
    return before


def orders_in_other_currencies(session: Session, shop_id: int, code: str) -> dict[str, int]:
    """How many orders the ledger holds in each currency other than `code`."""
    query = (
        select(col(Order.currency), func.count())
        .where(col(Order.shop_id) == shop_id, col(Order.currency) != code)
        .group_by(col(Order.currency))
    )
    return {currency: count for currency, count in session.exec(query)}


def list_shops(session: Session) -> list[Shop]:
    return list(session.exec(select(Shop).order_by(Shop.domain)))


def rekey_tokens(session: Session, cipher: TokenCipher) -> tuple[int, list[str]]:
    """Every stored token encrypted again under the cipher's current key: how many, and the
    domains of those neither key reads (left as they were). The rows are locked as they are
    read (PostgreSQL; SQLite's write lock is the transaction's already): a token stored or
    discarded meanwhile (`shop add`, an uninstall) is rekeyed as it is then, never overwritten
    with the one read before."""
    rekeyed, unreadable = 0, []
    query = select(Shop).where(col(Shop.access_token_encrypted).is_not(None))
    for shop in session.exec(query.order_by(col(Shop.id)).with_for_update()):
        assert shop.access_token_encrypted is not None
        try:
            shop.access_token_encrypted = cipher.rekey(shop.access_token_encrypted)
        except TokenDecryptionError:
            unreadable.append(shop.domain)
            continue
        session.add(shop)
        rekeyed += 1
    return rekeyed, sorted(unreadable)


def uninstall_shop(session: Session, shop: Shop, at: datetime) -> bool:
    """Mark the shop uninstalled and discard its token, unless it was (re)installed after `at`."""
    if shop.uninstalled_at is not None or shop.installed_at > at:
        return False
    shop.uninstalled_at = at
    shop.access_token_encrypted = None
    session.add(shop)
    session.execute(delete(QueuedJob).where(col(QueuedJob.shop_id) == shop.id))
    return True


def forget_shop(session: Session, shop: Shop, keep_event_id: int | None = None) -> None:
    """Delete everything held for the shop: its ledger (by cascade), its scores (which have no
    foreign key, see `replace_scores`), its inbox rows, itself."""
    session.execute(
        delete(InboxEvent).where(
            InboxEvent.shop_domain == shop.domain,  # type: ignore[arg-type]
            InboxEvent.id != keep_event_id,  # type: ignore[arg-type]
        )
    )
    shop_id = shop.id
    session.delete(shop)
    # after the shop: a score write holding it is waited for, and its rows are seen here
    session.flush()
    session.execute(delete(CustomerScore).where(col(CustomerScore.shop_id) == shop_id))
