"""A bulk start refused because the shop runs as many bulk operations as it may waits and asks
again, whichever of Shopify's two codes says so (scripted answers: the dev store gives only
OPERATION_IN_PROGRESS)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from plugin.shopify.bulk import BulkError, BulkRunner
from tests.shopify.test_client import Fake, ok

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def refused(code: str) -> httpx.Response:
    error = {"field": None, "message": "Bulk operations limit reached", "code": code}
    return ok({"bulkOperationRunQuery": {"bulkOperation": None, "userErrors": [error]}})


def operation(status: str, query: str = "{ someone { else } }") -> dict[str, Any]:
    return {
        "id": "gid://shopify/BulkOperation/9",
        "status": status,
        "errorCode": None,
        "objectCount": "0",
        "url": None,
        "partialDataUrl": None,
        "query": query,
    }


@pytest.mark.parametrize("code", ["OPERATION_IN_PROGRESS", "LIMIT_REACHED"])
async def test_a_busy_shop_is_waited_for_then_asked_again(code: str, tmp_path: Path) -> None:
    # given a shop whose places are taken (the newest operation, not ours, already ended)
    started = {"id": "gid://shopify/BulkOperation/10", "status": "CREATED"}
    fake = Fake(
        refused(code),
        ok({"currentBulkOperation": operation("COMPLETED")}),
        ok({"bulkOperationRunQuery": {"bulkOperation": started, "userErrors": []}}),
        ok({"node": {**operation("COMPLETED"), "id": started["id"], "url": None}}),
    )
    runner = BulkRunner(fake.client(), httpx.AsyncClient(), sleep=fake.sleep, poll_seconds=2.0)
    # when a bulk query is run
    outcome = await runner.query("{ orders { edges { node { id } } } }", into=tmp_path / "x")
    # then it waited a poll, asked again, and followed its own operation
    assert outcome.status == "COMPLETED" and outcome.operation_id == started["id"]
    assert fake.waits == [2.0]
    asked = [json.loads(r.content)["query"].split()[1] for r in fake.requests]
    assert asked == ["RunBulkQuery($query:", "Current($type:", "RunBulkQuery($query:", "Poll($id:"]


async def test_another_refusal_is_raised_with_its_message(tmp_path: Path) -> None:
    fake = Fake(refused("INVALID"))
    runner = BulkRunner(fake.client(), httpx.AsyncClient(), sleep=fake.sleep)
    with pytest.raises(BulkError, match="limit reached"):
        await runner.query("{ orders { edges { node { id } } } }", into=tmp_path / "x")


async def test_a_shop_busy_past_the_wait_is_a_clear_error(tmp_path: Path) -> None:
    # given a shop whose places stay taken (each refusal, then the newest operation, ended)
    answers = [refused("LIMIT_REACHED"), ok({"currentBulkOperation": operation("COMPLETED")})]
    fake = Fake(*answers * 4)
    runner = BulkRunner(
        fake.client(),
        httpx.AsyncClient(),
        sleep=fake.sleep,
        poll_seconds=10.0,
        busy_wait_seconds=25.0,
    )
    # when a bulk query is run, then it gives up once it has waited past 25 s, saying why
    with pytest.raises(BulkError, match="stayed busy"):
        await runner.query("{ orders { edges { node { id } } } }", into=tmp_path / "x")
    assert fake.waits == [10.0, 10.0, 10.0]
