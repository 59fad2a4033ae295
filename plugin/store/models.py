"""The tables. Only ids, dates, amounts and products: no names, emails, phones or addresses.

The schema is created and evolved by the Alembic migrations in `migrations/`, never by
`create_all`; a test checks that the migrations and these models agree.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import BigInteger, Column, ForeignKey, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from plugin.store.types import BigIntId, Money, UTCDateTime

PENDING, DONE, PARKED = "pending", "done", "parked"


def _shop_fk() -> Column[int]:
    return Column(BigInteger, ForeignKey("shops.id", ondelete="CASCADE"), primary_key=True)


class Shop(SQLModel, table=True):
    __tablename__ = "shops"

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    domain: str = Field(max_length=255, unique=True)
    access_token_encrypted: str | None = Field(default=None, sa_type=Text)
    scopes: str = Field(default="", max_length=1024)
    currency: str | None = Field(default=None, max_length=3)
    # Shopify's `shop { ianaTimezone }`: purchase days are this zone's days (None: UTC's)
    iana_timezone: str | None = Field(default=None, max_length=64)
    installed_at: datetime = Field(sa_type=UTCDateTime)
    uninstalled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    needs_reauth: bool = False
    settings: str = Field(default="{}", sa_type=Text)  # JSON: per-shop overrides of the defaults
    # The version of the app's metafield definitions last made sure of in the store (0: never).
    definitions_version: int = 0

    @property
    def installed(self) -> bool:
        return self.uninstalled_at is None


class InboxEvent(SQLModel, table=True):
    """A verified webhook, stored before it is acknowledged; processed later by the processor.

    The payload is the minimised one (see webhooks/payloads.py): what the ledger needs, with the
    personal fields Shopify sends dropped before anything is written.
    """

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        UniqueConstraint("shop_domain", "webhook_id", name="uq_inbox_shop_webhook"),
        # Claims read pending rows in id order: (status, id) gives them in order with no sort
        # of every pending row (a backlog of 50,000 made each claim take 25 ms on SQLite).
        Index("ix_inbox_pending", "status", "id", "next_attempt_at"),
    )

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    shop_domain: str = Field(max_length=255)
    webhook_id: str = Field(max_length=255)
    topic: str = Field(max_length=64)
    event_id: str | None = Field(default=None, max_length=255)
    triggered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    api_version: str | None = Field(default=None, max_length=32)
    received_at: datetime = Field(sa_type=UTCDateTime)
    payload: str = Field(sa_type=Text)
    status: str = Field(default=PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, sa_type=Text)
    processed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Customer(SQLModel, table=True):
    """A customer's record (ids and dates only) and the aggregates kept current from the ledger."""

    __tablename__ = "customers"

    shop_id: int = Field(sa_column=_shop_fk())
    customer_id: int = Field(sa_type=BigInteger, primary_key=True)
    created_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    state: str | None = Field(default=None, max_length=32)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    orders: int = 0
    net_spend: Decimal = Field(default=Decimal("0"), sa_type=Money)
    first_order_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_order_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Bumped whenever the ledger figures above change; a score made at an older version is stale.
    ledger_version: int = 0


class Order(SQLModel, table=True):
    """The newest known version of an order (test orders are never stored)."""

    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_customer", "shop_id", "customer_id"),)

    shop_id: int = Field(sa_column=_shop_fk())
    order_id: int = Field(sa_type=BigInteger, primary_key=True)
    customer_id: int | None = Field(default=None, sa_type=BigInteger)
    created_at: datetime = Field(sa_type=UTCDateTime)
    processed_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    version_digest: str = Field(max_length=64)
    currency: str = Field(max_length=3)
    presentment_currency: str | None = Field(default=None, max_length=3)
    total: Decimal = Field(sa_type=Money)
    current_total: Decimal = Field(sa_type=Money)
    financial_status: str | None = Field(default=None, max_length=32)
    cancelled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    source_name: str | None = Field(default=None, max_length=255)
    # Derived from this version and the refunds it does not reflect yet; kept for fast sums.
    net_amount: Decimal = Field(sa_type=Money)
    counted: bool = False


class OrderLine(SQLModel, table=True):
    __tablename__ = "order_lines"
    __table_args__ = (Index("ix_order_lines_product", "shop_id", "product_id"),)

    shop_id: int = Field(sa_column=_shop_fk())
    order_id: int = Field(sa_type=BigInteger, primary_key=True)
    line_id: int = Field(sa_type=BigInteger, primary_key=True)
    product_id: int | None = Field(default=None, sa_type=BigInteger)
    variant_id: int | None = Field(default=None, sa_type=BigInteger)
    product_type: str | None = Field(default=None, max_length=255)
    sku: str | None = Field(default=None, max_length=255)
    quantity: int
    current_quantity: int
    price: Decimal = Field(sa_type=Money)
    total_discount: Decimal = Field(sa_type=Money)
    gift_card: bool = False


class Refund(SQLModel, table=True):
    """A refund, from refunds/create or from an order version that lists it.

    `reflected` is true once an order version whose current total already includes this refund
    has been applied; until then the refund is subtracted from the order's net amount.
    """

    __tablename__ = "refunds"
    __table_args__ = (Index("ix_refunds_order", "shop_id", "order_id"),)

    shop_id: int = Field(sa_column=_shop_fk())
    refund_id: int = Field(sa_type=BigInteger, primary_key=True)
    order_id: int = Field(sa_type=BigInteger)
    created_at: datetime = Field(sa_type=UTCDateTime)
    lines_amount: Decimal = Field(sa_type=Money)
    transactions_amount: Decimal | None = Field(default=None, sa_type=Money)
    transactions_currency: str | None = Field(default=None, max_length=3)
    lines: str = Field(default="[]", sa_type=Text)  # JSON [[line_id, quantity], ...]
    reflected: bool = False


class DataRequest(SQLModel, table=True):
    """A customers/data_request to answer: the report comes from `clvsync export --customer`."""

    __tablename__ = "data_requests"

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    shop_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("shops.id", ondelete="CASCADE"), nullable=False)
    )
    customer_id: int = Field(sa_type=BigInteger)
    request_id: str | None = Field(default=None, max_length=64)
    received_at: datetime = Field(sa_type=UTCDateTime)


class Redaction(SQLModel, table=True):
    """A customer or an order redacted by customers/redact (ids only), so that nothing
    delivered or read after it (a late webhook, a backfill) brings it back."""

    __tablename__ = "redactions"

    shop_id: int = Field(sa_column=_shop_fk())
    kind: str = Field(max_length=16, primary_key=True)  # "customer" | "order"
    item_id: int = Field(sa_type=BigInteger, primary_key=True)
    redacted_at: datetime = Field(sa_type=UTCDateTime)


class ModelRun(SQLModel, table=True):
    """One scoring run of a shop: a full refit, or a re-score of changed customers."""

    __tablename__ = "model_runs"
    __table_args__ = (Index("ix_model_runs_shop", "shop_id", "id"),)

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    shop_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("shops.id", ondelete="CASCADE"), nullable=False)
    )
    kind: str = Field(max_length=16)  # "full" | "rescore"
    started_at: datetime = Field(sa_type=UTCDateTime)
    seconds: float
    as_of: datetime = Field(sa_type=UTCDateTime)
    repeat_model: str = Field(max_length=16)
    repeat_params: str = Field(sa_type=Text)  # JSON
    spend_params: str | None = Field(default=None, sa_type=Text)  # JSON
    log_likelihood: float | None = None
    converged: bool = False
    customers: int = 0
    repeat_customers: int = 0
    confidence: str = Field(max_length=16)  # "fitted" | "rules"
    note: str = Field(default="", sa_type=Text)
    reference: str = Field(default="{}", sa_type=Text)  # JSON: quintile edges, thresholds
    settings: str = Field(default="{}", sa_type=Text)  # JSON: the thresholds in force
    scored: int = 0


class CustomerScore(SQLModel, table=True):
    """A customer's scores, segment, desired tags and the reasons for them, from the last run."""

    __tablename__ = "customer_scores"

    # no foreign key: replace_scores checks the shop once, forget_shop deletes (migration 0006)
    shop_id: int = Field(sa_type=BigInteger, primary_key=True)
    customer_id: int = Field(sa_type=BigInteger, primary_key=True)
    run_id: int = Field(sa_type=BigInteger)
    ledger_version: int
    aov: float
    mean_days_between_orders: float | None = None
    trailing_12m_spend: float
    historical_clv: float
    p_alive: float
    expected_purchases: float
    expected_next_order_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    expected_spend_per_order: float
    predicted_clv: float
    recency_score: int
    frequency_score: int
    monetary_score: int
    segment: str = Field(max_length=32)
    reorder_due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    tags: str = Field(default="", sa_type=Text)  # desired tags, space-separated, without prefix
    reasons: str = Field(default="{}", sa_type=Text)  # JSON: tag -> why


class CustomerSync(SQLModel, table=True):
    """What the store is known to hold for a customer under the app's control: the prefixed tags
    and the metafield values last confirmed pushed (or read back by a reconcile)."""

    __tablename__ = "customer_sync"

    shop_id: int = Field(sa_column=_shop_fk())
    customer_id: int = Field(sa_type=BigInteger, primary_key=True)
    tags: str = Field(default="[]", sa_type=Text)  # JSON list of full tags, prefix included
    metafields: str = Field(default="{}", sa_type=Text)  # JSON: key -> value as sent
    pushed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    checked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Why the store refused the last push of this customer's tags (the 250-tag cap, a deleted
    # customer), and the tag set that was refused: not retried until the desired set changes or
    # a reconcile reads the customer again.
    blocked: str | None = Field(default=None, sa_type=Text)
    blocked_tags: str | None = Field(default=None, sa_type=Text)
    # A change was sent that the store may or may not have applied (no answer came): the next
    # push reads this customer back before it plans (migration 0012).
    uncertain: bool = False


class SyncChange(SQLModel, table=True):
    """One change applied to the store (or refused by it), with its reason: the audit trail."""

    __tablename__ = "sync_changes"
    __table_args__ = (
        Index("ix_sync_changes_customer", "shop_id", "customer_id", "id"),
        Index("ix_sync_changes_run", "shop_id", "job_run_id", "id"),  # a run's changes: undo
        Index("ix_sync_changes_applied", "shop_id", "applied_at"),  # the prune
    )

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    shop_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("shops.id", ondelete="CASCADE"), nullable=False)
    )
    customer_id: int | None = Field(default=None, sa_type=BigInteger)
    product_id: int | None = Field(default=None, sa_type=BigInteger)  # product metafields
    kind: str = Field(max_length=16)  # "tag" | "metafield"
    name: str = Field(max_length=255)  # the full tag, or the metafield key
    action: str = Field(max_length=16)  # "add" | "remove" | "set" | "delete" | "refused" | "found"
    value: str | None = Field(default=None, sa_type=Text)
    reason: str = Field(default="", sa_type=Text)
    via: str = Field(max_length=16)  # "call" | "bulk" | "read" (found)
    job_run_id: int | None = Field(default=None, sa_type=BigInteger)
    applied_at: datetime = Field(sa_type=UTCDateTime)


class JobRun(SQLModel, table=True):
    """One run of a scheduled job for a shop: when, how it ended, what it counted."""

    __tablename__ = "job_runs"
    __table_args__ = (Index("ix_job_runs_shop_job", "shop_id", "job", "id"),)

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    shop_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("shops.id", ondelete="CASCADE"), nullable=False)
    )
    job: str = Field(max_length=32)
    worker: str = Field(max_length=255)
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str = Field(default="running", max_length=16)  # running | ok | failed | skipped
    counts: str = Field(default="{}", sa_type=Text)  # JSON
    error: str | None = Field(default=None, sa_type=Text)


class JobLease(SQLModel, table=True):
    """Who runs a shop's job right now, until when: two processes never run the same one. Jobs
    that must not overlap share one lease name (see jobs/runs.py)."""

    __tablename__ = "job_leases"

    shop_id: int = Field(sa_column=_shop_fk())
    job: str = Field(max_length=32, primary_key=True)
    holder: str = Field(max_length=255)
    expires_at: datetime = Field(sa_type=UTCDateTime)


class QueuedJob(SQLModel, table=True):
    """A shop's job that is due: put here by the elected scheduler at each tick, taken by the
    first worker with room for it (`jobs.queue`). One per (shop, job): a tick that comes while
    one waits is the same work, and joins it."""

    __tablename__ = "job_queue"

    shop_id: int = Field(sa_column=_shop_fk())
    job: str = Field(max_length=32, primary_key=True)
    due_at: datetime = Field(sa_type=UTCDateTime)  # its first tick: the oldest is taken first
    latest_at: datetime = Field(sa_type=UTCDateTime)  # its newest: the misfire grace counts from it


class ProductRecommendation(SQLModel, table=True):
    """A product's recommended partners from the last recommendations run, in rank order:
    frequently bought together ("fbt") or upsell ("upsell")."""

    __tablename__ = "product_recommendations"

    shop_id: int = Field(sa_column=_shop_fk())
    product_id: int = Field(sa_type=BigInteger, primary_key=True)
    kind: str = Field(max_length=16, primary_key=True)
    rank: int = Field(primary_key=True)
    other_product_id: int = Field(sa_type=BigInteger)
    support: int  # orders (fbt) or customers (upsell) behind it
    confidence: float | None = None
    lift: float | None = None


class BundleCandidate(SQLModel, table=True):
    """Products bought together well above chance, for the merchant to review."""

    __tablename__ = "bundle_candidates"
    __table_args__ = (Index("ix_bundle_candidates_shop", "shop_id", "rank"),)

    id: int | None = Field(default=None, sa_type=BigIntId, primary_key=True)
    shop_id: int = Field(
        sa_column=Column(BigInteger, ForeignKey("shops.id", ondelete="CASCADE"), nullable=False)
    )
    rank: int
    product_ids: str = Field(sa_type=Text)  # space-separated, 2 or 3 of them
    orders: int
    lift: float
    combined_price: Decimal = Field(sa_type=Money)


class CustomerRecommendation(SQLModel, table=True):
    """A customer's next products from the last recommendations run."""

    __tablename__ = "customer_recommendations"

    shop_id: int = Field(sa_column=_shop_fk())
    customer_id: int = Field(sa_type=BigInteger, primary_key=True)
    product_ids: str = Field(sa_type=Text)  # JSON list, best first


class ProductSync(SQLModel, table=True):
    """The app's product metafield values last confirmed in the store."""

    __tablename__ = "product_sync"

    shop_id: int = Field(sa_column=_shop_fk())
    product_id: int = Field(sa_type=BigInteger, primary_key=True)
    metafields: str = Field(default="{}", sa_type=Text)  # JSON: "namespace.key" -> value
    pushed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # Values sent without the store's answer, which it may or may not hold (JSON: "namespace.key"
    # -> value, null for a delete): the next push reads the product back before it plans, and
    # a value found there that the app sent is its own, not the merchant's (migration 0013).
    unanswered: str | None = Field(default=None, sa_type=Text)


class GoneProduct(SQLModel, table=True):
    """A product the store no longer offers (a value naming it was refused as a reference to
    nothing, or a reconcile's read of every product did not find it active: deleted, draft,
    archived or unlisted): left out of every list the app pushes until it is seen again (an
    order placed after `gone_at` names it, or a read finds it active)."""

    __tablename__ = "gone_products"

    shop_id: int = Field(sa_column=_shop_fk())
    product_id: int = Field(sa_type=BigInteger, primary_key=True)
    gone_at: datetime = Field(sa_type=UTCDateTime)
    reason: str = Field(default="", sa_type=Text)


class KeptProductField(SQLModel, table=True):
    """A product metafield outside the app's namespace that the app may fill (Shopify's
    complementary products) but found holding a value it did not write: the merchant's (say,
    curated in Search & Discovery), never overwritten nor deleted."""

    __tablename__ = "kept_product_fields"

    shop_id: int = Field(sa_column=_shop_fk())
    product_id: int = Field(sa_type=BigInteger, primary_key=True)
    name: str = Field(max_length=255, primary_key=True)  # "namespace.key"
    found_at: datetime = Field(sa_type=UTCDateTime)


class ProductCost(SQLModel, table=True):
    """A variant's cost per item as the store last gave it (Shopify's `InventoryItem.unitCost`,
    in the shop's currency), read when the shop takes its historical CLV as gross margin from
    product costs (`scoring.margin_from_costs`). A variant without a cost has no row."""

    __tablename__ = "product_costs"

    shop_id: int = Field(sa_column=_shop_fk())
    variant_id: int = Field(sa_type=BigInteger, primary_key=True)
    unit_cost: Decimal = Field(sa_type=Money)
    read_at: datetime = Field(sa_type=UTCDateTime)
