"""A 401 marks the shop as needing re-authorisation only while it still holds the token the
store refused: a new token stored while a job ran with the old one (`clvsync shop add`, a token
rotated) is not undone by the old token's refusal."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from jobs.backfill import scheduled_backfill
from jobs.context import JobContext
from jobs.runs import FAILED, JobFn, run_job
from jobs.writeback import reconcile_shop
from plugin.store import shops
from plugin.store.models import Shop
from plugin.store.tokens import TokenCipher
from tests.helpers import add_shop, make_settings

pytestmark = pytest.mark.anyio

JOBS: list[tuple[str, JobFn]] = [("backfill", scheduled_backfill), ("reconcile", reconcile_shop)]


def refusing(
    engine: Engine, shop: Shop, new_token: str | None, sent: list[str]
) -> httpx.MockTransport:
    """A store that refuses every call (401), a new token being stored (when one is given)
    while the call is in flight."""
    cipher = TokenCipher(make_settings().token_encryption_key)

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["X-Shopify-Access-Token"])
        if new_token is not None:
            with Session(engine) as session, session.begin():
                shops.add_shop(session, shop.domain, new_token, cipher, datetime.now(UTC))
        return httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})

    return httpx.MockTransport(handler)


def stored(engine: Engine, shop: Shop) -> tuple[str, bool]:
    with Session(engine) as session:
        held = session.get(Shop, shop.id)
    assert held is not None and held.access_token_encrypted is not None
    cipher = TokenCipher(make_settings().token_encryption_key)
    return cipher.decrypt(held.access_token_encrypted), held.needs_reauth


@pytest.mark.parametrize(("job", "fn"), JOBS)
async def test_a_401_to_the_old_token_leaves_a_shop_given_a_new_one_meanwhile(
    engine: Engine, job: str, fn: JobFn
) -> None:
    # given a shop whose job calls the store with its old token, and a new token stored while
    # that call is in flight (the store refuses the old one)
    shop = add_shop(engine, token="shpat_old")
    sent: list[str] = []
    transport = refusing(engine, shop, "shpat_new", sent)
    # when the job runs
    async with httpx.AsyncClient(transport=transport) as http:
        assert shop.id is not None
        result = await run_job(JobContext(engine, make_settings(), http), shop.id, job, fn)
    # then the run fails on the 401, but the shop keeps its new token, not needing reauth
    assert result.outcome == FAILED and "refused (401)" in (result.error or "")
    assert sent[0] == "shpat_old"
    assert stored(engine, shop) == ("shpat_new", False)


@pytest.mark.parametrize(("job", "fn"), JOBS)
async def test_a_401_to_the_token_still_held_marks_the_shop(
    engine: Engine, job: str, fn: JobFn
) -> None:
    # given a shop whose token the store refuses, and no new one stored
    shop = add_shop(engine, token="shpat_revoked")
    transport = refusing(engine, shop, None, [])
    # when the job runs
    async with httpx.AsyncClient(transport=transport) as http:
        assert shop.id is not None
        result = await run_job(JobContext(engine, make_settings(), http), shop.id, job, fn)
    # then the shop is marked as needing re-authorisation
    assert result.outcome == FAILED
    assert stored(engine, shop) == ("shpat_revoked", True)
