"""Column types that keep money exact and datetimes in UTC on every backend."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect, Integer
from sqlalchemy.types import TypeDecorator

# An auto-incrementing 64-bit key: on SQLite only INTEGER PRIMARY KEY auto-increments.
BigIntId = BigInteger().with_variant(Integer(), "sqlite")

MONEY_SCALE = 4  # Shopify amounts have at most 3 decimals (KWD, BHD); one spare digit
_QUANTUM = Decimal(1).scaleb(-MONEY_SCALE)


class Money(TypeDecorator[Decimal]):
    """A Decimal stored as an integer count of 1/10,000 units.

    Exact on SQLite too (which has no decimal type), and SUM() over it stays exact in SQL.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        return int(value.quantize(_QUANTUM, rounding=ROUND_HALF_EVEN).scaleb(MONEY_SCALE))

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return to_money(value)


def to_money(scaled: int | Decimal) -> Decimal:
    """The Decimal for a scaled integer as stored by `Money`, with two decimals at least."""
    amount = Decimal(int(scaled)).scaleb(-MONEY_SCALE).normalize()
    exponent = amount.as_tuple().exponent
    return (
        amount.quantize(Decimal("0.01")) if isinstance(exponent, int) and exponent > -2 else amount
    )


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite keeps no zone; it is added back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the store keeps timezone-aware UTC datetimes only")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
