"""Configuration of the store generator: population parameters, catalogue, order life cycle."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from plugin.devstore.models import DEFAULT_TIME_ZONE

# Fixed id bases keep generated ids in Shopify's (large integer) range and make each kind of
# object recognisable in logs; a per-chunk stride keeps ids unique without global counters, so
# chunks could be generated independently (and in parallel) and still agree.
CUSTOMER_ID_BASE = 6_400_000_000_000
ORDER_ID_BASE = 5_500_000_000_000
LINE_ITEM_ID_BASE = 13_000_000_000_000
REFUND_ID_BASE = 9_100_000_000_000
PRODUCT_ID_BASE = 7_100_000_000_000
VARIANT_ID_BASE = 4_200_000_000_000
ORDER_ID_STRIDE = 100_000_000
LINE_ITEM_ID_STRIDE = 1_000_000_000


@dataclass(frozen=True)
class PopulationParams:
    """BG/NBD (Fader, Hardie & Lee 2005) and Gamma-Gamma (Fader, Hardie & Lee 2005b) parameters.

    Time unit: days. lambda ~ Gamma(shape=r, rate=alpha) repeat purchases per day while alive;
    p ~ Beta(a, b) chance of dropping out after each repeat purchase; order value z ~ Gamma(shape=
    spend_p, rate=nu) with nu ~ Gamma(shape=spend_q, rate=spend_gamma), so a customer's mean order
    value is spend_p / nu. Defaults: mean lambda 1/120 days (about three orders a year), mean p
    about 0.24, mean order value spend_p * spend_gamma / (spend_q - 1) = 60 in shop currency.
    """

    r: float = 0.5
    alpha: float = 60.0
    a: float = 0.8
    b: float = 2.5
    spend_p: float = 6.0
    spend_q: float = 4.0
    spend_gamma: float = 30.0


@dataclass(frozen=True)
class CatalogueParams:
    """Shape of the catalogue and of the planted product structure."""

    products_per_type: int = 5
    complement_pairs: int = 6
    complement_probability: float = 0.6
    consumable_cycle_days: tuple[int, ...] = (21, 30, 45, 60)
    refill_noise: float = 0.15
    refill_abandon_probability: float = 0.2
    custom_item_share: float = 0.02
    max_candidate_lines: int = 6


@dataclass(frozen=True)
class LifecycleParams:
    """Shares of orders that are edited, refunded, cancelled, guest or test orders.

    Edits and partial refunds touch real purchases; cancellations, full refunds, test orders and
    guest orders are extra orders on top of the planted purchase process, so the planted
    repeat-purchase truth stays exactly what an app that ignores them should find.
    """

    edit_share: float = 0.03
    partial_refund_share: float = 0.05
    cancelled_share: float = 0.03
    full_refund_share: float = 0.02
    test_share: float = 0.005
    guest_share: float = 0.10
    customer_update_share: float = 0.2
    presentment_currencies: tuple[tuple[str, float, float], ...] = (
        ("USD", 1.0, 0.70),
        ("EUR", 0.92, 0.15),
        ("GBP", 0.79, 0.10),
        ("CAD", 1.37, 0.05),
    )


@dataclass(frozen=True)
class GeneratorConfig:
    """Everything the generator needs; the same config and seed give the same store."""

    customers: int = 5_000
    history_days: int = 1_095
    start: datetime = datetime(2023, 1, 1, tzinfo=UTC)
    shop_domain: str = "clvsync-dev.myshopify.com"
    shop_currency: str = "USD"
    shop_time_zone: str = DEFAULT_TIME_ZONE
    population: PopulationParams = field(default_factory=PopulationParams)
    catalogue: CatalogueParams = field(default_factory=CatalogueParams)
    lifecycle: LifecycleParams = field(default_factory=LifecycleParams)
    consumable_refills: bool = True
    chunk_customers: int = 10_000
    # Opt-in realism of which products customers buy (plugin.devstore.gen_taste); at 0 the
    # store is exactly what it was without them. customer_taste: the share of a customer's
    # purchase candidate lines drawn from their taste_types preferred product types (and
    # price tier) instead of global popularity; sequential_complements: the chance that a
    # later purchase order brings the planted partner of an anchor bought before without it.
    customer_taste: float = 0.0
    taste_types: int = 2
    sequential_complements: float = 0.0

    def __post_init__(self) -> None:
        for name in ("customer_taste", "sequential_complements"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.taste_types < 1:
            raise ValueError("taste_types must be at least 1")
        try:
            ZoneInfo(self.shop_time_zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "America", a directory
            raise ValueError(
                f"shop_time_zone {self.shop_time_zone!r} is no IANA time zone"
            ) from None

    @property
    def end(self) -> datetime:
        """The moment the history stops (exclusive): the generated store's "now"."""
        return self.start + timedelta(days=self.history_days)
