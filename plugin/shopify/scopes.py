"""The access scopes the merchant granted the app's token, as the Admin API reports them.

`currentAppInstallation` "returns the AppInstallation for the currently authenticated app"
(Admin GraphQL reference, 2024-01 to 2026-10), and an AppInstallation's `accessScopes:
[AccessScope!]!` are "the access scopes granted to the application by a merchant during
installation", each named by its `handle` (`read_orders`, `read_all_orders`, ...): the token's
scopes, whatever shopify.app.toml asks for (a custom app's token carries those ticked when it
was made).
"""

from __future__ import annotations

from typing import Any

from plugin.shopify.client import AdminClient, QueryError

ACCESS_SCOPES_QUERY = "query AccessScopes { currentAppInstallation { accessScopes { handle } } }"


async def granted_scopes(client: AdminClient) -> frozenset[str]:
    """The handles of the scopes the client's token holds; QueryError when the store refuses
    the query or its answer lists none (not even the scope the call needed)."""
    data = await client.execute(ACCESS_SCOPES_QUERY)
    handles = _handles(data.get("currentAppInstallation"))
    if not handles:
        raise QueryError(f"{client.shop_domain}: the store's answer named no access scopes")
    return handles


def _handles(installation: Any) -> frozenset[str]:
    scopes = installation.get("accessScopes") if isinstance(installation, dict) else None
    if not isinstance(scopes, list):
        return frozenset()
    return frozenset(
        scope["handle"]
        for scope in scopes
        if isinstance(scope, dict) and isinstance(scope.get("handle"), str)
    )
