"""DevStoreConfig: every knob of one dev store run, loadable from JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

DEFAULT_TOKEN = "shpat_devstore_local_token"
SUPPORTED_VERSIONS = ("2025-10", "2026-01", "2026-04", "2026-07", "2026-10", "unstable")
_SHARES = (
    "fault_error_share",
    "fault_drop_share",
    "fault_file_error_share",
    "fault_file_cut_share",
)
_LISTS = ("api_versions", "access_scopes")  # JSON lists, kept as tuples
# The scopes the app asks for (shopify.app.toml), and read_all_orders: a token without it is
# served only the last 60 days of orders (plugin/devstore/access.py).
APP_SCOPES = ("read_orders", "read_customers", "write_customers", "read_products", "write_products")
READ_ALL_ORDERS = "read_all_orders"


@dataclass(frozen=True)
class DevStoreConfig:
    """Defaults are Shopify's Standard plan: a 2,000-point bucket restoring 100 points a second.

    `access_tokens` maps each accepted X-Shopify-Access-Token to a shop domain. Left empty, the
    store accepts DEFAULT_TOKEN for its only shop, whatever that shop's domain is.
    `access_scopes` are the scopes every token holds (`currentAppInstallation`): by default the
    app's and read_all_orders, so the whole history is served; without read_all_orders only
    the orders created in the last 60 days are.
    """

    access_tokens: dict[str, str] = field(default_factory=dict)
    api_versions: tuple[str, ...] = SUPPORTED_VERSIONS
    access_scopes: tuple[str, ...] = (*APP_SCOPES, READ_ALL_ORDERS)
    bucket_size: float = 2000.0
    restore_rate: float = 100.0
    max_query_cost: int = 1000
    throttle_status_code: int = 200
    fault_error_share: float = 0.0
    fault_error_status: int = 503
    fault_latency_seconds: float = 0.0
    fault_latency_jitter_seconds: float = 0.0
    fault_drop_share: float = 0.0
    fault_drop_mode: str = "status"
    # Faults of the storage endpoints (staged uploads, bulk result files), drawn apart from
    # the GraphQL ones (see faults.py): a share answered with fault_error_status before
    # anything is stored or served, and a share cut part-way through the body, either by
    # closing the connection ("abort") or by serving the part as the whole file ("truncate").
    fault_file_error_share: float = 0.0
    fault_file_cut_share: float = 0.0
    fault_file_cut_mode: str = "abort"
    seed: int = 0
    app_id: int = 1
    max_concurrent_bulk_operations: int = 5  # of each type (query, mutation); 1 before 2026-01
    bulk_start_delay_seconds: float = 0.0
    bulk_rows_per_step: int = 1000
    bulk_step_delay_seconds: float = 0.0
    # Whether an app may write metafields in Shopify's reserved `shopify--` namespaces (such as
    # shopify--discovery--product_recommendation): unconfirmed (SHOPIFY.md), so both readings
    # can be tested; false refuses such writes with APP_NOT_AUTHORIZED.
    shopify_namespaces_writable: bool = True

    def __post_init__(self) -> None:
        if self.throttle_status_code not in (200, 429):
            raise ValueError("throttle_status_code must be 200 or 429")
        if self.fault_drop_mode not in ("status", "abort"):
            raise ValueError("fault_drop_mode must be 'status' or 'abort'")
        if self.fault_file_cut_mode not in ("abort", "truncate"):
            raise ValueError("fault_file_cut_mode must be 'abort' or 'truncate'")
        for name in _SHARES:
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        for name in ("bucket_size", "restore_rate"):  # a bucket that never holds or refills
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0")

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DevStoreConfig:
        """A config from JSON values; a ValueError names each setting that is unknown or of
        the wrong type (a number given as text failed every request later, not here)."""
        if not isinstance(raw, dict):
            raise ValueError("the dev store's settings must be a JSON object")
        types = {item.name: str(item.type) for item in fields(cls)}
        unknown = set(raw) - set(types)
        if unknown:
            raise ValueError(f"unknown dev store settings: {sorted(unknown)}")
        wrong = [
            f"{name} must be {_JSON_TYPES[types[name]][0]}, not {json.dumps(value)}"
            for name, value in raw.items()
            if not _JSON_TYPES[types[name]][1](value)
        ]
        if wrong:
            raise ValueError("; ".join(wrong))
        values = dict(raw)
        for name in _LISTS:
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

    @classmethod
    def from_json_file(cls, path: str | Path) -> DevStoreConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def to_dict(self) -> dict[str, Any]:
        raw = asdict(self)
        for name in _LISTS:
            raw[name] = list(raw[name])
        return raw


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _tokens(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(v, str) for v in value.values())


# each field's annotation: what a JSON value of it must be, and the check
_JSON_TYPES: dict[str, tuple[str, Callable[[Any], bool]]] = {
    "float": ("a number", _number),
    "int": ("a whole number", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "tuple[str, ...]": ("a list of strings", _strings),
    "dict[str, str]": ("an object of token: shop domain", _tokens),
}
