"""Shops: registering, listing, uninstalling, and forgetting them."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import delete
from sqlmodel import Session, col, select

from plugin.store.models import CustomerScore, InboxEvent, QueuedJob, Shop
from plugin.store.tokens import TokenCipher

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


def list_shops(session: Session) -> list[Shop]:
    return list(session.exec(select(Shop).order_by(Shop.domain)))


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
