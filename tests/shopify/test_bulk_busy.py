"""A bulk start refused because the shop runs as many bulk operations as it may waits and asks
again, whichever of Shopify's two codes says so; a start whose answer was lost follows its own
operation instead of starting the work again; polls slow down to their cap (scripted answers:
the dev store gives only OPERATION_IN_PROGRESS, and loses no answer of its own accord)."""

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


def operations_asked(fake: Fake) -> list[str]:
    """Each request's operation, by its name and first variable (`RunBulkQuery($query:`)."""
    return [json.loads(r.content)["query"].split()[1] for r in fake.requests]


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
    asked = operations_asked(fake)
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


class LosesTheStartsAnswer(Fake):
    """The first start's answer is lost on the way back (the connection drops after the store
    started it); the retry is refused as busy, and the shop's current operation is the one
    started, its query carrying the mark of the start."""

    def __init__(self) -> None:
        super().__init__()
        self.started: str | None = None

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content)
        name = body["query"].split()[1]
        if name == "RunBulkQuery($query:":
            if self.started is None:
                self.started = body["variables"]["query"]
                raise httpx.RemoteProtocolError("peer closed connection")
            # a third start would be a second run of the same work: refused for good
            starts = sum("RunBulkQuery" in r.content.decode() for r in self.requests)
            return refused("OPERATION_IN_PROGRESS" if starts == 2 else "INVALID")
        if name == "Current($type:":
            return ok({"currentBulkOperation": operation("RUNNING", self.started or "")})
        return ok({"node": operation("COMPLETED", self.started or "")})


async def test_a_start_whose_answer_was_lost_follows_its_own_operation(tmp_path: Path) -> None:
    fake = LosesTheStartsAnswer()
    runner = BulkRunner(fake.client(), httpx.AsyncClient(), sleep=fake.sleep)
    # when a bulk query is run
    outcome = await runner.query("{ orders { edges { node { id } } } }", into=tmp_path / "x")
    # then the operation found running is taken for its own and followed: never started again
    assert outcome.status == "COMPLETED" and outcome.operation_id == operation("x")["id"]
    asked = operations_asked(fake)
    assert asked == ["RunBulkQuery($query:"] * 2 + ["Current($type:", "Poll($id:"]


async def test_another_apps_running_operation_is_followed_until_it_ends(tmp_path: Path) -> None:
    # given a shop whose place is taken by another app's operation, still running
    started = {"id": "gid://shopify/BulkOperation/10", "status": "CREATED"}
    fake = Fake(
        refused("OPERATION_IN_PROGRESS"),
        ok({"currentBulkOperation": operation("RUNNING")}),
        ok({"node": operation("RUNNING")}),
        ok({"node": operation("COMPLETED")}),
        ok({"bulkOperationRunQuery": {"bulkOperation": started, "userErrors": []}}),
        ok({"node": {**operation("COMPLETED"), "id": started["id"]}}),
    )
    runner = BulkRunner(fake.client(), httpx.AsyncClient(), sleep=fake.sleep, poll_seconds=2.0)
    # when a bulk query is run
    outcome = await runner.query("{ orders { edges { node { id } } } }", into=tmp_path / "x")
    # then it polled the other operation until it ended, and asked again at once
    assert outcome.operation_id == started["id"]
    asked = operations_asked(fake)
    start, current, poll = "RunBulkQuery($query:", "Current($type:", "Poll($id:"
    assert asked == [start, current, poll, poll, start, poll]
    assert fake.waits == [2.0]


async def test_polls_slow_down_to_their_cap(tmp_path: Path) -> None:
    # given an operation that runs for eight polls
    started = {"id": "gid://shopify/BulkOperation/10", "status": "CREATED"}
    running = [ok({"node": {**operation("RUNNING"), "id": started["id"]}})] * 8
    fake = Fake(
        ok({"bulkOperationRunQuery": {"bulkOperation": started, "userErrors": []}}),
        *running,
        ok({"node": {**operation("COMPLETED"), "id": started["id"]}}),
    )
    runner = BulkRunner(
        fake.client(), httpx.AsyncClient(), sleep=fake.sleep, poll_seconds=1.0, poll_cap_seconds=3
    )
    # when it is followed
    await runner.query("{ orders { edges { node { id } } } }", into=tmp_path / "x")
    # then each wait is half as long again as the one before, up to the cap
    assert fake.waits == [1.0, 1.5, 2.25, 3.0, 3.0, 3.0, 3.0, 3.0]
