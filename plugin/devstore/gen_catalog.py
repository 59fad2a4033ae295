"""The generated catalogue: types, price tiers, variants, planted complements, consumables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from plugin.devstore.gen_config import PRODUCT_ID_BASE, VARIANT_ID_BASE, CatalogueParams

# (type, base price in shop currency, consumable?) for a coffee-and-tea shop: consumables
# (beans, tea, filters) are what customers refill; hardware is what plants complements.
PRODUCT_TYPES: tuple[tuple[str, float, bool], ...] = (
    ("Coffee", 14.0, True),
    ("Tea", 11.0, True),
    ("Filters", 6.0, True),
    ("Mugs", 16.0, False),
    ("Brewers", 45.0, False),
    ("Grinders", 85.0, False),
    ("Kettles", 60.0, False),
    ("Accessories", 12.0, False),
    ("Apparel", 28.0, False),
)
SINGULAR = {
    "Filters": "Filter",
    "Mugs": "Mug",
    "Brewers": "Brewer",
    "Grinders": "Grinder",
    "Kettles": "Kettle",
    "Accessories": "Accessory",
}
TIERS: tuple[tuple[str, float], ...] = (("Essential", 0.7), ("Classic", 1.0), ("Reserve", 1.8))
SIZES: tuple[tuple[str, float], ...] = (("Small", 1.0), ("Medium", 1.4), ("Large", 2.0))
CUSTOM_ITEM_TITLE = "Gift wrapping"
CUSTOM_ITEM_PRICE_CENTS = 400


@dataclass(frozen=True)
class Catalogue:
    """Products in Shopify's shape plus flat per-variant arrays for vectorised sampling.

    Index ``n_variants`` (one past the last variant) stands for the custom item (no product).
    """

    products: list[dict[str, Any]]
    product_types: list[str]
    product_titles: list[str]
    variant_ids: NDArray[np.int64]
    variant_product: NDArray[np.int64]
    variant_price_cents: NDArray[np.int64]
    variant_weight: NDArray[np.float64]
    variant_sku: list[str]
    variant_title: list[str]
    complement_variant: NDArray[np.int64]
    consumable_cycle_days: NDArray[np.float64]
    complements: tuple[tuple[int, int], ...]
    consumables: dict[int, float]

    @property
    def n_variants(self) -> int:
        """Number of real variants (the custom item is the next index)."""
        return int(self.variant_ids.shape[0])


def _price_cents(base: float, tier: float, size: float, jitter: float) -> int:
    # Prices end in .99 or .00 like a real shop; never below 1.00.
    whole = max(1, round(base * tier * size * jitter))
    return whole * 100 - (1 if whole % 2 else 0)


def _build_products(
    rng: np.random.Generator, params: CatalogueParams
) -> tuple[list[dict[str, Any]], list[tuple[int, int, int, str, str]]]:
    products: list[dict[str, Any]] = []
    variants: list[tuple[int, int, int, str, str]] = []  # product index, id, cents, sku, title
    for type_name, base, _ in PRODUCT_TYPES:
        for k in range(params.products_per_type):
            tier_name, tier = TIERS[k % len(TIERS)]
            p_index = len(products)
            product_id = PRODUCT_ID_BASE + p_index + 1
            title = f"{tier_name} {SINGULAR.get(type_name, type_name)} {k + 1}"
            jitter = float(rng.uniform(0.85, 1.15))
            product_variants = []
            for size_name, size in SIZES[: int(rng.integers(1, len(SIZES) + 1))]:
                cents = _price_cents(base, tier, size, jitter)
                variant_id = VARIANT_ID_BASE + len(variants) + 1
                sku = f"{type_name[:3].upper()}-{p_index + 1:03d}-{size_name[0]}"
                variants.append((p_index, variant_id, cents, sku, size_name))
                variant = {"id": variant_id, "price": _money(cents)}
                if (cost := cost_cents(variant_id, cents)) is not None:
                    variant["cost"] = _money(cost)
                product_variants.append(variant)
            handle = title.lower().replace(" ", "-")
            products.append(
                {
                    "id": product_id,
                    "title": title,
                    "product_type": type_name,
                    "handle": handle,
                    "variants": product_variants,
                    "tags": [],
                }
            )
    return products, variants


def cost_cents(variant_id: int, price_cents: int) -> int | None:
    """The variant's cost per item: 25-70% of its price, or none for about one variant in ten
    (a merchant rarely enters every cost). A hash of the id, not a draw, so that the catalogue's
    random stream, and all that follows it, is as it was before costs were planted."""
    mixed = (variant_id * 2654435761) % 2**32
    if mixed % 10 == 0:
        return None
    return max(1, round(price_cents * (0.25 + 0.45 * (mixed >> 8) / 2**24)))


def _money(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def _popularity(rng: np.random.Generator, n_products: int) -> NDArray[np.float64]:
    # Zipf-like popularity over a random product order: a few best sellers, a long tail.
    ranks = rng.permutation(n_products)
    weights: NDArray[np.float64] = np.power(ranks + 1.0, -0.8, dtype=np.float64)
    return weights


def _plant_consumables(
    rng: np.random.Generator, products: list[dict[str, Any]], params: CatalogueParams
) -> dict[int, float]:
    consumable_types = {name for name, _, consumable in PRODUCT_TYPES if consumable}
    candidates = [i for i, p in enumerate(products) if p["product_type"] in consumable_types]
    chosen = rng.choice(len(candidates), size=len(params.consumable_cycle_days), replace=False)
    return {
        int(products[candidates[int(c)]]["id"]): float(cycle)
        for c, cycle in zip(chosen, params.consumable_cycle_days, strict=True)
    }


def _plant_complements(
    rng: np.random.Generator, products: list[dict[str, Any]], params: CatalogueParams
) -> tuple[tuple[int, int], ...]:
    # Anchors are distinct hardware products; each complement has another type (brewer -> filter).
    hardware = {name for name, _, consumable in PRODUCT_TYPES if not consumable}
    anchors = [i for i, p in enumerate(products) if p["product_type"] in hardware]
    picked = rng.choice(len(anchors), size=params.complement_pairs, replace=False)
    pairs = []
    for a in picked:
        anchor = products[anchors[int(a)]]
        others = [p for p in products if p["product_type"] != anchor["product_type"]]
        partner = others[int(rng.integers(0, len(others)))]
        pairs.append((int(anchor["id"]), int(partner["id"])))
    return tuple(pairs)


def build_catalogue(rng: np.random.Generator, params: CatalogueParams) -> Catalogue:
    """A catalogue of len(PRODUCT_TYPES) * products_per_type products with planted structure."""
    products, variants = _build_products(rng, params)
    variant_product = np.array([v[0] for v in variants], dtype=np.int64)
    product_weight = _popularity(rng, len(products))
    # Within a product the first size sells most; weights are normalised over all variants.
    first = np.r_[True, variant_product[1:] != variant_product[:-1]]
    variant_weight = product_weight[variant_product] * np.where(first, 1.0, 0.4)
    variant_weight = variant_weight / variant_weight.sum()
    consumables = _plant_consumables(rng, products, params)
    complements = _plant_complements(rng, products, params)
    product_index = {int(p["id"]): i for i, p in enumerate(products)}
    first_variant = np.flatnonzero(first)
    complement_variant = np.full(len(variants), -1, dtype=np.int64)
    for anchor_id, partner_id in complements:
        anchor_variants = np.flatnonzero(variant_product == product_index[anchor_id])
        complement_variant[anchor_variants] = first_variant[product_index[partner_id]]
    cycles = np.zeros(len(variants), dtype=np.float64)
    for product_id, cycle in consumables.items():
        cycles[variant_product == product_index[product_id]] = cycle
    return Catalogue(
        products=products,
        product_types=[str(p["product_type"]) for p in products],
        product_titles=[str(p["title"]) for p in products],
        variant_ids=np.array([v[1] for v in variants], dtype=np.int64),
        variant_product=variant_product,
        variant_price_cents=np.array([v[2] for v in variants], dtype=np.int64),
        variant_weight=variant_weight,
        variant_sku=[v[3] for v in variants],
        variant_title=[v[4] for v in variants],
        complement_variant=complement_variant,
        consumable_cycle_days=cycles,
        complements=complements,
        consumables=consumables,
    )
