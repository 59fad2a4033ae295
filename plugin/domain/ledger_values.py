"""The ids, date-times, amounts and quantities the ledger takes from Shopify, checked the same
way whether they come in a webhook's payload (`webhooks.payloads`) or in the backfill's bulk
export (`jobs.backfill`).

Each function raises ValueError saying what is wrong with the value; the caller names the field
it came in, and raises its own error (a webhook's fails that event, a bulk export's leaves that
order out), so that one bad value never reaches the database, where it would fail every order
of the transaction it came in.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

# Shopify's ids are positive and fit the ledger's BIGINT columns; past that the database would
# refuse the row.
MAX_ID = 2**63 - 1

# The ledger keeps amounts as whole 1/10,000ths in BIGINT columns (`plugin.store.types.Money`),
# up to about 9.2 * 10^14, and sums them per order and per customer. No order comes near 10^12
# in any currency (10^12 dong is some 40 million dollars); a value past it is an error, and
# refused here, not when it overflows the column and fails every order stored with it.
MAX_AMOUNT = Decimal(10) ** 12
# Quantities are INTEGER columns.
MAX_QUANTITY = 2**31 - 1

# The moments a record may carry. A bogus one far out (year 9999) would stop the shop's
# scoring: its days span millennia read in the shop's zone day by day, past the calendar's end.
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)


def checked_id(number: int) -> int:
    """`number`, if it can be a Shopify id (1 to MAX_ID)."""
    if not 0 < number <= MAX_ID:
        raise ValueError(f"{number} is not an id (ids are 1 to 2^63-1)")
    return number


def read_moment(value: object, *, zone_required: bool = False) -> datetime:
    """The ISO 8601 date-time `value` in UTC, between EARLIEST and LATEST; one without a zone
    is taken as UTC, or refused with `zone_required`."""
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 date-time, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value)
        moment = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: out of range once in UTC (9999-12-31)
        raise ValueError(f"not an ISO 8601 date-time in range: {value!r}") from None
    if parsed.tzinfo is None and zone_required:
        raise ValueError(f"no time zone in {value!r}")
    if not EARLIEST <= moment < LATEST:
        raise ValueError(
            f"{value!r} is not between {EARLIEST.year} and {LATEST.year}: "
            "no order, refund or customer has such a date"
        )
    return moment


def read_amount(value: object) -> Decimal:
    """The decimal amount `value` (a string, as Shopify sends money, or a number), if finite."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"expected a decimal amount, got {value!r}")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a decimal amount: {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"not a finite amount: {value!r}")
    if abs(amount) > MAX_AMOUNT:
        raise ValueError(f"{value!r} is out of range: amounts are at most 10^12 either way")
    return amount


def read_quantity(value: object) -> int:
    """The quantity `value`: a whole number from 0 to MAX_QUANTITY (2.0 is taken as 2)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"expected a whole number, got {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a whole number: {value!r}") from None
    if not number.is_finite() or number != number.to_integral_value():
        raise ValueError(f"not a whole number: {value!r}")
    if not 0 <= number <= MAX_QUANTITY:
        raise ValueError(f"{value!r} is out of range: quantities are 0 to 2^31-1")
    return int(number)
