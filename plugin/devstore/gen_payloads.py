"""Render a generated chunk as Shopify webhook payloads (SHOPIFY.md shapes, money as text)."""

from __future__ import annotations

import functools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from numpy.typing import NDArray

from plugin.devstore.gen_catalog import CUSTOM_ITEM_TITLE, Catalogue
from plugin.devstore.gen_chunk import Chunk
from plugin.devstore.gen_config import CUSTOMER_ID_BASE, GeneratorConfig
from plugin.devstore.gen_simulate import CANCELLED, FULL_REFUND, GUEST, TEST

_FIRST = "Ada Alan Amara Bea Carlos Chen Dara Elif Emma Femi Grace Hugo Ines Ivan Jon Kai Lena"
_LAST = "Abbott Baker Costa Dubois Eriksen Fischer Garcia Haddad Ito Jensen Kowalski Larsen Moreau"
FIRST_NAMES = tuple(_FIRST.split(" "))
LAST_NAMES = tuple(_LAST.split(" "))
STREETS = ("Oak", "Maple", "Cedar", "Harbour", "Mill", "Station", "Church", "Park", "Bridge")
CITIES = (
    ("Portland", "US", "97201"),
    ("Austin", "US", "73301"),
    ("Leeds", "GB", "LS1 4AP"),
    ("Lyon", "FR", "69001"),
    ("Toronto", "CA", "M5V 2T6"),
    ("Berlin", "DE", "10115"),
)
SOURCES = ("web", "web", "web", "pos", "shopify_draft_order")
PAID_DELAY_DAYS = 2.0 / 86_400.0
FOLLOW_UP_DAYS = 1.0 / 86_400.0
# One cancelled order in PAID_CANCEL_EVERY was paid first and is refunded in full when it is
# cancelled (the others were never paid and are voided), chosen by order id: deterministic.
PAID_CANCEL_EVERY = 3
# Final financial status and whether the order is cancelled, by stage of its life.
STAGE_STATUS = {
    "placed": "paid",
    "edited": "paid",
    "pending": "pending",
    "partially_refunded": "partially_refunded",
    "refunded": "refunded",
    "cancelled": "voided",
    "cancelled_refunded": "refunded",
}
CANCELLED_STAGES = {"cancelled", "cancelled_refunded"}
ZEROED_STAGES = CANCELLED_STAGES | {"refunded"}  # every line's current quantity is 0

# (ISO time, topic, payload); ISO strings in one fixed format sort in time order.
RawEvent = tuple[str, str, dict[str, Any]]


@functools.lru_cache(maxsize=1 << 17)
def money(cents: int) -> str:
    """Integer cents as Shopify's decimal string ("12.30"); amounts here are never negative."""
    return f"{cents // 100}.{cents % 100:02d}"


@functools.lru_cache(maxsize=1 << 17)
def _money_set(cents: int, shop: str, code: str, rate: float) -> dict[str, Any]:
    # Cached, so equal amounts share one dict: payloads are read-only by contract.
    return {
        "shop_money": {"amount": money(cents), "currency_code": shop},
        "presentment_money": {"amount": money(round(cents * rate)), "currency_code": code},
    }


def iso_times(start: datetime, days: NDArray[np.float64]) -> list[str]:
    """Float days since start as ISO 8601 UTC strings, to the second (NaN gives "")."""
    finite = np.isfinite(days)
    seconds = np.where(finite, np.floor(np.nan_to_num(days) * 86_400.0), 0).astype(np.int64)
    base = np.datetime64(start.replace(tzinfo=None), "s")
    text = np.datetime_as_string(base + seconds.astype("timedelta64[s]"), unit="s")
    return [
        f"{t}+00:00" if ok else "" for t, ok in zip(text.tolist(), finite.tolist(), strict=True)
    ]


def _ints(rng: np.random.Generator, low: int, high: int, n: int) -> list[int]:
    drawn: list[int] = np.asarray(rng.integers(low, high, size=n), dtype=np.int64).tolist()
    return drawn


@dataclass
class _Profiles:
    first: list[str]
    last: list[str]
    phone: list[str]
    street: list[str]
    city: list[int]
    created: list[str]
    updated: list[str]
    update_phone: list[str]


class ChunkRenderer:
    """Turns one chunk's arrays into customer and order payloads and time-stamped events."""

    def __init__(self, config: GeneratorConfig, catalogue: Catalogue, chunk: Chunk, seed: int):
        self.config, self.catalogue, self.chunk = config, catalogue, chunk
        self.shop = config.shop_currency
        self.currencies = [(c[0], c[1]) for c in config.lifecycle.presentment_currencies]
        self.event_prefix = ((seed & 0xFFFF_FFFF) << 96) | (chunk.index << 64)
        self.event_counter = 0
        self._lists(chunk)
        self.profiles = self._profiles(np.random.default_rng(chunk.profile_seed))
        self.customer_versions: dict[int, dict[str, Any]] = {}

    def _lists(self, chunk: Chunk) -> None:
        # Python lists index ~10x faster than numpy scalars in the per-order loop.
        o, b = chunk.orders, chunk.orders.baskets
        self.o_id, self.o_customer = o.order_id.tolist(), o.customer.tolist()
        self.o_kind, self.o_currency = o.kind.tolist(), o.currency.tolist()
        self.o_original, self.o_current = o.original_total.tolist(), o.current_total.tolist()
        self.o_subtotal, self.o_discounts = b.subtotal.tolist(), b.discounts.tolist()
        self.o_shipping, self.o_tax = b.shipping.tolist(), b.tax.tolist()
        self.o_refund_cents, self.o_refund_id = o.refund_cents.tolist(), o.refund_id.tolist()
        self.o_line_start, self.o_line_count = o.line_start.tolist(), o.line_count.tolist()
        start = self.config.start
        self.t_created = iso_times(start, o.day)
        self.t_paid = iso_times(start, o.day + PAID_DELAY_DAYS)
        self.t_edit = iso_times(start, o.edit_day)
        self.t_refund = iso_times(start, o.refund_day)
        self.t_refund_update = iso_times(start, o.refund_day + FOLLOW_UP_DAYS)
        self.t_cancel = iso_times(start, o.cancel_day)
        self.l_id, self.l_variant = o.line_id.tolist(), b.line_variant.tolist()
        self.l_qty, self.l_price = b.line_quantity.tolist(), b.line_price.tolist()
        self.l_discount, self.l_removed = b.line_discount.tolist(), o.line_removed.tolist()
        self.c_index = chunk.customers.index.tolist()

    def _profiles(self, rng: np.random.Generator) -> _Profiles:
        n = self.chunk.customers.index.shape[0]
        birth = self.chunk.customers.birth_day
        created = np.maximum(birth - rng.uniform(0.0, 0.01, n), 0.0)  # not before the start
        horizon = float(self.config.history_days)
        updated = np.where(
            rng.random(n) < self.config.lifecycle.customer_update_share,
            birth + rng.uniform(0.0, 1.0, n) * (horizon - birth),
            np.nan,
        )
        return _Profiles(
            first=[FIRST_NAMES[i] for i in _ints(rng, 0, len(FIRST_NAMES), n)],
            last=[LAST_NAMES[i] for i in _ints(rng, 0, len(LAST_NAMES), n)],
            phone=[f"+1555{d:07d}" for d in _ints(rng, 0, 10**7, n)],
            street=[
                f"{num} {STREETS[s]} Street"
                for num, s in zip(
                    _ints(rng, 1, 400, n),
                    _ints(rng, 0, len(STREETS), n),
                    strict=True,
                )
            ],
            city=_ints(rng, 0, len(CITIES), n),
            created=iso_times(self.config.start, created),
            updated=iso_times(self.config.start, updated),
            update_phone=[f"+1555{d:07d}" for d in _ints(rng, 0, 10**7, n)],
        )

    # ---- customers -------------------------------------------------------------------------

    def customer_id(self, pos: int) -> int:
        """Shopify id of the chunk's pos-th customer."""
        return CUSTOMER_ID_BASE + int(self.c_index[pos]) + 1

    def customer_payload(self, pos: int, updated: bool = False) -> dict[str, Any]:
        """customers/create (or, with updated, customers/update) payload; contact data is fake."""
        p, cid = self.profiles, self.customer_id(pos)
        first, last = p.first[pos], p.last[pos]
        return {
            "id": cid,
            "admin_graphql_api_id": f"gid://shopify/Customer/{cid}",
            "email": f"{first.lower()}.{last.lower()}.{cid % 100_000}@example.com",
            "first_name": first,
            "last_name": last,
            "phone": p.update_phone[pos] if updated else p.phone[pos],
            "state": "enabled",
            "verified_email": True,
            "currency": self.shop,
            "created_at": p.created[pos],
            "updated_at": p.updated[pos] if updated else p.created[pos],
            "default_address": self._address(pos),
        }

    def _address(self, pos: int) -> dict[str, Any]:
        p = self.profiles
        city, country, zip_code = CITIES[p.city[pos]]
        return {
            "first_name": p.first[pos],
            "last_name": p.last[pos],
            "address1": p.street[pos],
            "city": city,
            "zip": zip_code,
            "country_code": country,
            "phone": p.phone[pos],
        }

    def customer_events(self) -> Iterator[RawEvent]:
        """customers/create at sign-up and, for some, one customers/update later."""
        for pos in range(len(self.c_index)):
            yield self.profiles.created[pos], "customers/create", self.customer_payload(pos)
            if self.profiles.updated[pos]:
                payload = self.customer_payload(pos, updated=True)
                yield self.profiles.updated[pos], "customers/update", payload

    def final_customers(self) -> Iterator[dict[str, Any]]:
        """Every customer as of the end of the history."""
        for pos in range(len(self.c_index)):
            yield self.customer_payload(pos, updated=bool(self.profiles.updated[pos]))

    # ---- money -----------------------------------------------------------------------------

    def money_set(self, cents: int, currency: int) -> dict[str, Any]:
        """shop_money in the shop's currency, presentment_money in the order's currency."""
        code, rate = self.currencies[currency]
        return _money_set(cents, self.shop, code, rate)

    # ---- orders ----------------------------------------------------------------------------

    def _line(self, j: int, currency: int, current_quantity: int) -> dict[str, Any]:
        cat, variant = self.catalogue, self.l_variant[j]
        custom = variant == cat.n_variants
        product = -1 if custom else int(cat.variant_product[variant])
        price, discount, line_id = self.l_price[j], self.l_discount[j], self.l_id[j]
        return {
            "id": line_id,
            "admin_graphql_api_id": f"gid://shopify/LineItem/{line_id}",
            "product_id": None if custom else cat.products[product]["id"],
            "variant_id": None if custom else int(cat.variant_ids[variant]),
            "title": CUSTOM_ITEM_TITLE if custom else cat.product_titles[product],
            "variant_title": None if custom else cat.variant_title[variant],
            "quantity": self.l_qty[j],
            "current_quantity": current_quantity,
            "price": money(price),
            "price_set": self.money_set(price, currency),
            "total_discount": money(discount),
            "total_discount_set": self.money_set(discount, currency),
            "sku": None if custom else cat.variant_sku[variant],
            "gift_card": False,
            "product_type": None if custom else cat.product_types[product],
            "vendor": "clvsync dev",
            "requires_shipping": True,
            "taxable": True,
        }

    def _lines(self, i: int, stage: str, base: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if stage in ("placed", "pending"):
            return base
        start = self.o_line_start[i]
        lines = []
        for k, line in enumerate(base):
            quantity = line["quantity"]
            if (
                stage in ("cancelled", "cancelled_refunded", "refunded")
                or self.l_removed[start + k]
            ):
                quantity = 0
            elif stage == "partially_refunded" and k == 0:
                quantity -= 1
            lines.append(
                line if quantity == line["quantity"] else line | {"current_quantity": quantity}
            )
        return lines

    def _order_customer(self, i: int) -> dict[str, Any] | None:
        pos = self.o_customer[i]
        if pos < 0:
            return None
        c = self.customer_payload(pos)
        keys = ("id", "admin_graphql_api_id", "email", "first_name", "last_name", "phone", "state")
        return {k: c[k] for k in keys} | {"created_at": c["created_at"]}

    def _order_base(self, i: int) -> dict[str, Any]:
        # Everything that no later version of the order changes; versions copy it shallowly
        # (nested objects are shared between versions and must not be mutated).
        oid, cur = self.o_id[i], self.o_currency[i]
        customer = self._order_customer(i)
        pos = self.o_customer[i]
        address = self._address(pos) if pos >= 0 else self._guest_address(i)
        email = customer["email"] if customer else f"guest.{oid % 1_000_000}@example.com"
        original = self.money_set(self.o_original[i], cur)
        return {
            "id": oid,
            "admin_graphql_api_id": f"gid://shopify/Order/{oid}",
            "name": f"#{oid % 10_000_000}",
            "email": email,
            "customer": customer,
            "currency": self.shop,
            "presentment_currency": self.currencies[cur][0],
            "subtotal_price": money(self.o_subtotal[i]),
            "subtotal_price_set": self.money_set(self.o_subtotal[i], cur),
            "total_discounts": money(self.o_discounts[i]),
            "total_discounts_set": self.money_set(self.o_discounts[i], cur),
            "total_shipping_price_set": self.money_set(self.o_shipping[i], cur),
            "total_tax": money(self.o_tax[i]),
            "total_tax_set": self.money_set(self.o_tax[i], cur),
            "total_price": original["shop_money"]["amount"],
            "total_price_set": original,
            "current_total_price": original["shop_money"]["amount"],
            "current_total_price_set": original,
            "financial_status": "paid",
            "cancelled_at": None,
            "cancel_reason": None,
            "created_at": self.t_created[i],
            "processed_at": self.t_created[i],
            "updated_at": self.t_created[i],
            "test": self.o_kind[i] == TEST,
            "refunds": [],
            "source_name": SOURCES[oid % len(SOURCES)],
            "line_items": [
                self._line(j, cur, self.l_qty[j])
                for j in range(self.o_line_start[i], self.o_line_start[i] + self.o_line_count[i])
            ],
            "billing_address": address,
            "shipping_address": address,
        }

    def _version(
        self,
        base: dict[str, Any],
        i: int,
        stage: str,
        updated_at: str,
        current: int,
        refunds: list[dict[str, Any]],
    ) -> dict[str, Any]:
        current_set = self.money_set(current, self.o_currency[i])
        cancelled = stage in CANCELLED_STAGES
        return base | {
            "current_total_price": current_set["shop_money"]["amount"],
            "current_total_price_set": current_set,
            "financial_status": STAGE_STATUS[stage],
            "cancelled_at": self.t_cancel[i] if cancelled else None,
            "cancel_reason": "customer" if cancelled else None,
            "updated_at": updated_at,
            "refunds": refunds,
            "line_items": self._lines(i, stage, base["line_items"]),
        }

    def _guest_address(self, i: int) -> dict[str, Any]:
        oid = self.o_id[i]
        city, country, zip_code = CITIES[oid % len(CITIES)]
        return {
            "first_name": FIRST_NAMES[oid % len(FIRST_NAMES)],
            "last_name": LAST_NAMES[(oid // 7) % len(LAST_NAMES)],
            "address1": f"{oid % 400 + 1} {STREETS[oid % len(STREETS)]} Street",
            "city": city,
            "zip": zip_code,
            "country_code": country,
            "phone": f"+1555{oid % 10**7:07d}",
        }

    def _refund(self, i: int, full: bool, amount: int, at: str) -> dict[str, Any]:
        """refunds/create for order i: all its lines (full) or one unit of the first."""
        rid, oid, cur = self.o_refund_id[i], self.o_id[i], self.o_currency[i]
        start, count = self.o_line_start[i], self.o_line_count[i]
        items: list[dict[str, Any]] = []
        for j in range(start, start + (count if full else 1)):
            if self.l_removed[j]:
                continue
            qty = self.l_qty[j] if full else 1
            sub = self.l_price[j] * qty - self.l_discount[j] if full else self.o_refund_cents[i]
            items.append(
                {
                    "id": rid * 10 + len(items),
                    "line_item_id": self.l_id[j],
                    "quantity": qty,
                    "subtotal": money(sub),
                    "subtotal_set": self.money_set(sub, cur),
                    "restock_type": "return",
                }
            )
        return {
            "id": rid,
            "admin_graphql_api_id": f"gid://shopify/Refund/{rid}",
            "order_id": oid,
            "created_at": at,
            "processed_at": at,
            "note": None,
            "refund_line_items": items,
            "transactions": [
                {
                    "id": rid * 10,
                    "order_id": oid,
                    **self._transaction_money(amount, cur, rid),
                    "kind": "refund",
                    "status": "success",
                    "gateway": "bogus",
                    "created_at": at,
                }
            ],
            "order_adjustments": [],
        }

    def _transaction_money(self, cents: int, currency: int, refund_id: int) -> dict[str, str]:
        """A refund transaction's amount and currency. Which currency Shopify uses for an order
        presented in another one is unconfirmed (SHOPIFY.md lists amount, kind, status only),
        so such orders get both kinds: every other refund in the presentment currency."""
        code, rate = self.currencies[currency]
        if code != self.shop and refund_id % 2 == 0:
            return {"amount": money(round(cents * rate)), "currency": code}
        return {"amount": money(cents), "currency": self.shop}

    def _paid_then_cancelled(self, i: int, base: dict[str, Any]) -> list[RawEvent]:
        """Paid, then cancelled with a full refund: the money came in and went back."""
        at = self.t_cancel[i]
        refund = self._refund(i, True, self.o_original[i], at)
        paid = base | {"updated_at": self.t_paid[i]}
        final = self._version(base, i, "cancelled_refunded", at, 0, [refund])
        return [
            (self.t_created[i], "orders/create", base),
            (self.t_paid[i], "orders/paid", paid),
            (at, "refunds/create", refund),
            (at, "orders/cancelled", final),
            (at, "orders/updated", final),
        ]

    def order_events(self, i: int) -> tuple[list[RawEvent], dict[str, Any]]:
        """The webhook events of order i in time order, and its final version."""
        kind, created, base = self.o_kind[i], self.t_created[i], self._order_base(i)
        if kind == CANCELLED and self.o_id[i] % PAID_CANCEL_EVERY == 0:
            history = self._paid_then_cancelled(i, base)
            return history, history[-1][2]
        if kind == CANCELLED:
            placed = self._version(base, i, "pending", created, self.o_original[i], [])
            final = self._version(base, i, "cancelled", self.t_cancel[i], 0, [])
            return [
                (created, "orders/create", placed),
                (self.t_cancel[i], "orders/cancelled", final),
                (self.t_cancel[i], "orders/updated", final),
            ], final
        paid = base | {"updated_at": self.t_paid[i]}
        events: list[RawEvent] = [
            (created, "orders/create", base),
            (self.t_paid[i], "orders/paid", paid),
        ]
        final = paid
        if self.t_edit[i]:
            current = self.o_current[i] + self.o_refund_cents[i]
            final = self._version(base, i, "edited", self.t_edit[i], current, [])
            events.append((self.t_edit[i], "orders/updated", final))
        if self.t_refund[i]:
            full = kind == FULL_REFUND
            refund = self._refund(i, full, self.o_refund_cents[i], self.t_refund[i])
            stage = "refunded" if full else "partially_refunded"
            final = self._version(
                base, i, stage, self.t_refund_update[i], self.o_current[i], [refund]
            )
            events.append((self.t_refund[i], "refunds/create", refund))
            events.append((self.t_refund_update[i], "orders/updated", final))
        return events, final

    def next_event_id(self) -> str:
        """A UUID unique across seeds' chunks: (seed, chunk, counter) packed into 128 bits."""
        self.event_counter += 1
        return str(uuid.UUID(int=self.event_prefix | self.event_counter))

    def order_count(self) -> int:
        """Number of orders in the chunk."""
        return len(self.o_id)

    def is_guest(self, i: int) -> bool:
        """True for an order placed without a customer account."""
        return bool(self.o_kind[i] == GUEST)
