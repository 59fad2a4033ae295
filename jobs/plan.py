"""The write-back's plan: every customer's desired state against the state the store was last
known to hold, and what a dry run reports of the differences."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine

# the reader of the shop's write-back settings and its error, where the push takes them from
from plugin.domain.shop_days import known_zone
from plugin.domain.writeback import (
    CustomerChange,
    CustomerFigures,
    WritebackSettings,
    customer_change,
    desired_tags,
    metafield_values,
)
from plugin.store.models import Shop
from plugin.store.recommendations import gone_products
from plugin.store.scores import latest_full_run
from plugin.store.sync import Held, held_state

SAMPLE_SIZE = 10


@dataclass(frozen=True)
class Planned:
    change: CustomerChange
    pushed_tags: frozenset[str]
    pushed_metafields: dict[str, str]
    desired_tags: frozenset[str]


@dataclass
class Plan:
    """Every customer's change, and what a dry run reports of them."""

    items: list[Planned] = field(default_factory=list)
    skipped_refused: int = 0  # unchanged since the store refused them

    def summary(self, sample: int = SAMPLE_SIZE) -> dict[str, Any]:
        added: Counter[str] = Counter()
        removed: Counter[str] = Counter()
        set_: Counter[str] = Counter()
        deleted: Counter[str] = Counter()
        for item in self.items:
            added.update(item.change.add)
            removed.update(item.change.remove)
            set_.update(key for key, _ in item.change.set_metafields)
            deleted.update(item.change.delete_metafields)
        return {
            "customers_with_tag_changes": sum(i.change.tags_changed for i in self.items),
            "customers_with_metafield_changes": sum(
                i.change.metafields_changed for i in self.items
            ),
            "tags_added": dict(sorted(added.items())),
            "tags_removed": dict(sorted(removed.items())),
            # set and deleted together, the key readers of the dry run had before the split
            "metafields_changed": dict(sorted((set_ + deleted).items())),
            "metafields_set": dict(sorted(set_.items())),
            "metafields_deleted": dict(sorted(deleted.items())),
            "skipped_refused": self.skipped_refused,
            "sample": [_sample(item) for item in self.items[:sample]],
        }


def _sample(item: Planned) -> dict[str, Any]:
    change = item.change
    return {
        "customer_id": change.customer_id,
        "add": {tag: change.reason(tag) for tag in change.add},
        "remove": {tag: change.reason(tag) for tag in change.remove},
        "metafields": {key: value for key, value in change.set_metafields},
        "delete_metafields": list(change.delete_metafields),
    }


def plan_changes(engine: Engine, shop: Shop, settings: WritebackSettings) -> Plan:
    """Compare every customer's desired and pushed state (streamed from the store). Products
    the store no longer has are left out of the recommended ones: Shopify refuses a value
    naming one."""
    assert shop.id is not None
    run = latest_full_run(engine, shop.id)
    fitted = run is not None and run.confidence == "fitted"
    gone = gone_products(engine, shop.id)
    zone = known_zone(shop.iana_timezone)
    plan = Plan()
    for held in held_state(engine, shop.id):
        planned = _planned(held, settings.tag_prefix, fitted, gone, zone)
        if planned is None:
            continue
        if held.blocked is not None and held.blocked_tags == planned.desired_tags:
            # the store refused these very tags: not sent again, the values still are
            if not planned.change.metafields_changed:
                plan.skipped_refused += 1
                continue
            planned = replace(planned, change=replace(planned.change, add=(), remove=()))
        plan.items.append(planned)
    return plan


def _planned(
    held: Held, prefix: str, fitted: bool, gone: set[int], zone: ZoneInfo | None
) -> Planned | None:
    desired = frozenset() if held.tags is None else desired_tags(prefix, held.tags)
    values: dict[str, str] = {}
    if held.tags is not None:
        assert held.segment is not None and held.historical_clv is not None
        next_order = held.expected_next_order_at
        if next_order is not None and zone is not None:
            next_order = next_order.astimezone(zone)  # its date is the shop's
        figures = CustomerFigures(
            held.historical_clv,
            held.predicted_clv or 0.0,
            held.p_alive or 0.0,
            next_order,
            held.segment,
        )
        recommended = [p for p in held.recommended if p not in gone]
        values = metafield_values(figures, fitted, recommended)
    reasons = {prefix + tag: why for tag, why in json.loads(held.reasons).items()}
    change = customer_change(
        held.customer_id,
        desired,
        held.pushed_tags,
        values,
        held.pushed_metafields,
        reasons,
        held.segment,
    )
    if change is None:
        return None
    return Planned(change, held.pushed_tags, held.pushed_metafields, desired)
