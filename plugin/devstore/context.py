"""What every resolver sees: the shop's state, the server's own URL, how bulk work is started."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from plugin.devstore.access import orders_from
from plugin.devstore.config import DevStoreConfig
from plugin.devstore.models import BulkOperation
from plugin.devstore.state import DevStoreState


class BulkScheduler(Protocol):
    """Starts bulk operations in the background (implemented by bulk.BulkRunner)."""

    def start_query(
        self, context: ResolveContext, query: str, group_objects: bool
    ) -> tuple[BulkOperation | None, list[dict[str, object]]]: ...

    def start_mutation(
        self, context: ResolveContext, mutation: str, staged_upload_path: str
    ) -> tuple[BulkOperation | None, list[dict[str, object]]]: ...


@dataclass
class BulkWindow:
    """The root objects one step of a bulk query reads; nested connections are unlimited."""

    after_id: int = 0
    size: int = 1000
    served_ids: list[int] = field(default_factory=list)
    # The root keys (after the `query:` filter) as of the first step: filtered once per run.
    keys: list[int] | None = None


@dataclass
class ResolveContext:
    state: DevStoreState
    base_url: str
    app_id: int = 1
    bulk_scheduler: BulkScheduler | None = None
    bulk_window: BulkWindow | None = None
    api_version: str = "2026-10"
    shopify_namespaces_writable: bool = True
    access_scopes: tuple[str, ...] = DevStoreConfig.access_scopes  # the token's

    @property
    def orders_from(self) -> str | None:
        """The earliest `createdAt` of an order the token may read (None: every order)."""
        return orders_from(self.access_scopes, self.state.now())

    @property
    def in_bulk(self) -> bool:
        return self.bulk_window is not None

    @property
    def app_namespace(self) -> str:
        """Shopify puts metafields sent without a namespace in the app-reserved one."""
        return f"app--{self.app_id}"


if TYPE_CHECKING:
    from graphql import GraphQLResolveInfo

    # graphql-core 3.3 makes the resolve info generic in the context type.
    Info = GraphQLResolveInfo[ResolveContext]
