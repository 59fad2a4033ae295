"""What to write back to the store: per-shop write-back settings, the customer metafields and
their values, and the difference between a customer's desired and pushed state.

The app owns the tags under the shop's prefix and the metafields in its namespace, and nothing
else: a change only ever adds or removes tags it owns (the desired ones under the prefix, or
ones it pushed before, say under an older prefix) and sets or deletes its own metafields.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from plugin.domain.flags import FLAGS
from plugin.domain.segments import SEGMENTS

DEFAULT_TAG_PREFIX = "clv:"
MAX_TAG_LENGTH = 255
# The version of METAFIELDS below: a shop whose definitions are older gets them (re)made.
DEFINITIONS_VERSION = 2
# Shopify's own complementary-products metafield (Search & Discovery, Storefront
# productRecommendations COMPLEMENTARY); whether an app may write it is unconfirmed, so it is
# written only when the shop asks for it, beside the app's own.
COMPLEMENTARY_PRODUCTS = "shopify--discovery--product_recommendation.complementary_products"
MAX_PRODUCT_REFERENCES = 10


# Shopify's rule for a metafield namespace (MetafieldsSetInput, MetafieldDefinitionInput).
_NAMESPACE = re.compile(r"[A-Za-z0-9_-]{3,255}")
# Namespaces the app never takes: `custom`, where the admin puts the merchant's own definitions
# (the app would write over their values of the same keys), and Shopify's reserved `shopify...`.
_MERCHANTS_NAMESPACES = frozenset({"custom"})


class WritebackSettingsError(ValueError):
    """A shop's write-back setting that does not exist or has a wrong value; names it."""


@dataclass(frozen=True)
class WritebackSettings:
    """Per shop, from its settings JSON (top-level keys of the same names)."""

    tag_prefix: str = DEFAULT_TAG_PREFIX
    dry_run: bool = False  # compute and report the changes, never call Shopify
    bulk_threshold: int = 1000  # this many customers with changes or more: one bulk mutation
    metafield_namespace: str = "clv"
    complementary_products: bool = False  # also write Shopify's complementary-products field

    def __post_init__(self) -> None:
        if not isinstance(self.tag_prefix, str) or not self.tag_prefix.strip():
            raise WritebackSettingsError("tag_prefix must be a non-empty string")
        if "," in self.tag_prefix or len(self.tag_prefix) > 40:
            raise WritebackSettingsError("tag_prefix must have no comma and at most 40 characters")
        if self.tag_prefix != self.tag_prefix.strip():
            # Shopify trims its tags: the app would no longer know the tags it wrote as its own
            raise WritebackSettingsError("tag_prefix must not begin or end with white space")
        if self.tag_prefix[-1].isalnum():
            # its tags must read apart from the merchant's: "n" would make "nnew" and "nlost"
            raise WritebackSettingsError(
                "tag_prefix must end with a separator such as ':' or '-', not a letter or digit"
            )
        if not isinstance(self.dry_run, bool):
            raise WritebackSettingsError("dry_run must be true or false")
        if not isinstance(self.complementary_products, bool):
            raise WritebackSettingsError("complementary_products must be true or false")
        if isinstance(self.bulk_threshold, bool) or not isinstance(self.bulk_threshold, int):
            raise WritebackSettingsError("bulk_threshold must be a whole number")
        if self.bulk_threshold < 1:
            raise WritebackSettingsError("bulk_threshold must be at least 1")
        namespace = self.metafield_namespace
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            raise WritebackSettingsError(
                "metafield_namespace must be 3 to 255 letters, digits, hyphens or underscores"
            )
        if namespace.lower() in _MERCHANTS_NAMESPACES or namespace.lower().startswith("shopify"):
            raise WritebackSettingsError(
                f"metafield_namespace {namespace!r} is the merchant's own or Shopify's: choose "
                "one for the app alone (the default is 'clv')"
            )


def writeback_settings(shop_settings: Mapping[str, Any]) -> WritebackSettings:
    """The write-back keys of a shop's settings over the defaults (other keys are left to the
    other parts: "scoring", "schedule")."""
    known = {f.name for f in fields(WritebackSettings)}
    chosen = {key: value for key, value in shop_settings.items() if key in known}
    return replace(WritebackSettings(), **chosen)


@dataclass(frozen=True)
class MetafieldSpec:
    key: str
    type: str
    name: str
    description: str
    owner: str = "CUSTOMER"


# Customer metafields, typed so that Shopify segments, Flow and discounts can filter on them.
METAFIELDS: tuple[MetafieldSpec, ...] = (
    MetafieldSpec(
        "historical_value",
        "number_decimal",
        "Historical value",
        "Net revenue from this customer so far (gross margin if the shop sets a margin rate or "
        "takes product costs).",
    ),
    MetafieldSpec(
        "predicted_value",
        "number_decimal",
        "Predicted value",
        "Expected spend over the shop's prediction horizon (only when the models are fitted).",
    ),
    MetafieldSpec(
        "p_alive",
        "number_decimal",
        "Probability active",
        "Probability, 0 to 1, that the customer still buys (only when the models are fitted).",
    ),
    MetafieldSpec(
        "expected_next_order_date",
        "date",
        "Expected next order",
        "When the next order is expected, if within ten years.",
    ),
    MetafieldSpec("segment", "single_line_text_field", "Segment", "The customer's RFM segment."),
    MetafieldSpec(
        "recommended_products",
        "list.product_reference",
        "Recommended products",
        "The products this customer is most likely to buy next, best first.",
    ),
    MetafieldSpec(
        "frequently_bought_together",
        "list.product_reference",
        "Frequently bought together",
        "Products often in the same order as this one, by lift (at most 10).",
        owner="PRODUCT",
    ),
    MetafieldSpec(
        "upsell",
        "list.product_reference",
        "Upsell",
        "Pricier products of the same type that buyers of this one went on to buy.",
        owner="PRODUCT",
    ),
)
METAFIELD_TYPES = {spec.key: spec.type for spec in METAFIELDS}
# The app's keys in its namespace: a read-back takes these alone, whatever else the namespace
# holds (a merchant's own values there are never the app's to change or delete).
CUSTOMER_METAFIELD_KEYS = frozenset(s.key for s in METAFIELDS if s.owner == "CUSTOMER")
PRODUCT_METAFIELD_KEYS = frozenset(s.key for s in METAFIELDS if s.owner == "PRODUCT")


@dataclass(frozen=True)
class CustomerFigures:
    """The scored figures a customer's metafields show."""

    historical_clv: float
    predicted_clv: float
    p_alive: float
    expected_next_order_at: datetime | None
    segment: str


def product_gid(product_id: int) -> str:
    return f"gid://shopify/Product/{product_id}"


def product_references(product_ids: Sequence[int]) -> str:
    """A list.product_reference value: a JSON array of product GIDs (at most 10), compact."""
    gids = [product_gid(p) for p in product_ids[:MAX_PRODUCT_REFERENCES]]
    return json.dumps(gids, separators=(",", ":"))


def same_value(held: str | None, wanted: str) -> bool:
    """Whether a metafield holding `held` already shows `wanted`.

    Values are compared as what they mean, not as text: whether Shopify gives a value back
    as it was sent, or in its own form (a JSON list without spaces, "12.5" for "12.50"), is
    unconfirmed, and a text comparison would then find every read-back value changed and
    send it all again after each reconcile.
    """
    if held is None or held == wanted:
        return held == wanted
    if held.startswith("[") and wanted.startswith("["):
        try:
            return bool(json.loads(held) == json.loads(wanted))
        except ValueError:
            return False
    try:
        return Decimal(held) == Decimal(wanted)
    except InvalidOperation:
        return False


# Shopify's number_decimal range: 13 digits before the point (9 after, of which we send 2).
MAX_DECIMAL = Decimal("9999999999999.99")


def decimal_value(figure: float) -> str | None:
    """A figure as a number_decimal value with two decimals; None (not published: the store
    would refuse it, and with it the customer's other values) when it is not a finite number
    within Shopify's range, as a model that diverged could give."""
    if not math.isfinite(figure):
        return None
    value = Decimal(f"{figure:.2f}")
    return str(value) if abs(value) <= MAX_DECIMAL else None


def metafield_values(
    figures: CustomerFigures, fitted: bool, recommended: Sequence[int] = ()
) -> dict[str, str]:
    """The metafield values to hold, as Shopify takes them (strings). Predictions are only
    published when the shop's models are fitted: a rules-only shop shows none."""
    values = {"segment": figures.segment}
    if (historical := decimal_value(figures.historical_clv)) is not None:
        values["historical_value"] = historical
    if recommended:
        values["recommended_products"] = product_references(recommended)
    if fitted:
        if (predicted := decimal_value(figures.predicted_clv)) is not None:
            values["predicted_value"] = predicted
        if (p_alive := decimal_value(figures.p_alive)) is not None:
            values["p_alive"] = p_alive
        if figures.expected_next_order_at is not None:
            values["expected_next_order_date"] = figures.expected_next_order_at.date().isoformat()
    return values


def product_values(
    partners: Mapping[str, Sequence[int]], settings: WritebackSettings
) -> dict[str, str]:
    """A product's metafields ("namespace.key" -> value) from its partners by kind."""
    namespace = settings.metafield_namespace
    values = {}
    if partners.get("fbt"):
        values[f"{namespace}.frequently_bought_together"] = product_references(partners["fbt"])
        if settings.complementary_products:
            values[COMPLEMENTARY_PRODUCTS] = product_references(partners["fbt"])
    if partners.get("upsell"):
        values[f"{namespace}.upsell"] = product_references(partners["upsell"])
    return values


def desired_tags(prefix: str, tags: str) -> frozenset[str]:
    """A score's space-separated tag names under the shop's prefix."""
    return frozenset(prefix + tag for tag in tags.split())


TAG_NAMES = frozenset(SEGMENTS + FLAGS)  # every tag name a score can hold


def apps_tag(prefix: str, tag: str) -> bool:
    """Whether a tag in the store is one the app writes under this prefix: the prefix and one
    of its tag names. A merchant's tag that merely begins with the prefix (their `vip-gold`
    once the prefix is `vip-`, or a `clv:picked-by-hand`) is theirs, and left alone."""
    return tag.startswith(prefix) and tag[len(prefix) :] in TAG_NAMES


@dataclass(frozen=True)
class CustomerChange:
    """What to send for one customer; empty parts mean nothing to do there."""

    customer_id: int
    add: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    set_metafields: tuple[tuple[str, str], ...] = ()  # (key, value)
    delete_metafields: tuple[str, ...] = ()
    reasons: tuple[tuple[str, str], ...] = ()  # (tag or metafield key, why)

    @property
    def tags_changed(self) -> bool:
        return bool(self.add or self.remove)

    @property
    def metafields_changed(self) -> bool:
        return bool(self.set_metafields or self.delete_metafields)

    def reason(self, name: str) -> str:
        return dict(self.reasons).get(name, "")


def customer_change(
    customer_id: int,
    desired: frozenset[str],
    pushed: frozenset[str],
    desired_values: Mapping[str, str],
    pushed_values: Mapping[str, str],
    tag_reasons: Mapping[str, str],
    segment: str | None,
) -> CustomerChange | None:
    """The difference between what the store should hold and what it was last known to hold,
    or None when there is none. Every tag in `pushed` is the app's own (it pushed it)."""
    add = tuple(sorted(desired - pushed))
    remove = tuple(sorted(pushed - desired))
    to_set = tuple(
        sorted((k, v) for k, v in desired_values.items() if not same_value(pushed_values.get(k), v))
    )
    # of the app's keys alone: a key an older reconcile took for the app's (a merchant's own
    # value in the namespace) is never deleted
    gone = (set(pushed_values) - set(desired_values)) & CUSTOMER_METAFIELD_KEYS
    to_delete = tuple(sorted(gone))
    if not (add or remove or to_set or to_delete):
        return None
    reasons = [(tag, tag_reasons.get(tag, "")) for tag in add]
    why_not = "no longer applies" if segment is None else f"no longer applies (segment {segment})"
    reasons += [(tag, why_not) for tag in remove]
    reasons += [(key, f"value now {value}") for key, value in to_set]
    reasons += [(key, "no value to show any more") for key in to_delete]
    return CustomerChange(customer_id, add, remove, to_set, to_delete, tuple(reasons))
