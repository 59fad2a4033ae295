"""The variants' costs per item the costs job read from the store (`ProductCost`), for
historical CLV as gross margin: replaced whole by each read, read whole by the recompute."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Engine, delete, insert
from sqlalchemy import type_coerce as coerce
from sqlmodel import Session, col, select

from plugin.store.models import ProductCost

INSERT_BATCH = 10_000


def replace_costs(engine: Engine, shop_id: int, costs: Mapping[int, Decimal], at: datetime) -> None:
    """The shop's held costs become `costs` (variant -> cost per item), in one transaction."""
    table = ProductCost.__table__  # type: ignore[attr-defined]
    rows = [
        {"shop_id": shop_id, "variant_id": variant, "unit_cost": cost, "read_at": at}
        for variant, cost in costs.items()
    ]
    with engine.begin() as connection:
        connection.execute(delete(table).where(col(ProductCost.shop_id) == shop_id))
        for start in range(0, len(rows), INSERT_BATCH):
            connection.execute(insert(table), rows[start : start + INSERT_BATCH])


def held_costs(engine: Engine, shop_id: int) -> dict[int, int]:
    """The shop's costs per item (`ProductCost`), by variant, in the ledger's money units."""
    with Session(engine) as session:
        rows = session.exec(
            select(ProductCost.variant_id, coerce(ProductCost.unit_cost, BigInteger)).where(
                col(ProductCost.shop_id) == shop_id
            )
        )
        return dict(rows.all())
