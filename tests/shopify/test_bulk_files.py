"""The bulk client's staged uploads and result files through a storage that fails: 5xx, answers
cut part-way (the connection dropped, or a short file served as whole), refused and expired URLs.
Against the live dev store over real HTTP on loopback, with its file faults; against scripted
answers, what the dev store never does: a failed operation's partial data, a storage that
answers "not now" (408, 429), a refusal after a short read, a bulk mutation's result URL signed
again."""

# ruff: noqa: F811  (the dev store's fixtures are imported, and used by name)

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from plugin.devstore.config import DEFAULT_TOKEN, DevStoreConfig
from plugin.shopify.bulk import BulkError, BulkRunner, jsonl_lines
from plugin.shopify.client import AdminClient, TransientError
from tests.devstore.conftest import (  # noqa: F401
    DevStoreFactory,
    LiveDevStore,
    anyio_backend,
    devstore_factory,
    live_switch,
    make_state,
)
from tests.devstore.test_bulk import TAGS_ADD
from tests.shopify.test_bulk_busy import operation
from tests.shopify.test_client import Fake, ok

pytestmark = pytest.mark.anyio
CUSTOMERS = "{ customers { edges { node { id legacyResourceId } } } }"


@dataclass
class Storage:
    """The requests the client sent to the storage endpoints (paths), and what to do before
    each result-file request reaches the store."""

    files: list[str] = field(default_factory=list)
    uploads: list[str] = field(default_factory=list)
    before_file: list[Any] = field(default_factory=list)  # callables, each run once
    before_upload: list[Any] = field(default_factory=list)

    async def hook(self, request: httpx.Request) -> None:
        if request.url.path.startswith("/bulk-results/"):
            self.files.append(request.url.path)
            if self.before_file:
                self.before_file.pop(0)()
        elif request.url.path.startswith("/staged-uploads"):
            self.uploads.append(request.url.path)
            if self.before_upload:
                self.before_upload.pop(0)()


@pytest.fixture
def storage() -> Storage:
    return Storage()


@pytest.fixture
async def http(storage: Storage) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10, event_hooks={"request": [storage.hook]}) as client:
        yield client


def runner(store: LiveDevStore, http: httpx.AsyncClient) -> BulkRunner:
    async def sleep(seconds: float) -> None:
        await anyio.sleep(min(seconds, 0.005))

    client = AdminClient(
        http,
        store.state.domain,
        DEFAULT_TOKEN,
        api_version="2026-10",
        admin_url=store.base_url,
        sleep=sleep,
        rng=random.Random(0),
    )
    return BulkRunner(client, http, sleep=sleep, poll_seconds=0.01)


def served(store: LiveDevStore) -> bytes:
    """The one result file the store holds."""
    (content,) = store.state.bulk_results.values()
    return content


@pytest.mark.parametrize("mode", ["abort", "truncate"])
async def test_a_result_file_cut_part_way_is_read_again_from_the_top(
    devstore_factory: DevStoreFactory,
    http: httpx.AsyncClient,
    storage: Storage,
    tmp_path: Path,
    mode: str,
) -> None:
    # given a store that cuts most result files part-way, by dropping the connection or by
    # serving the part as the whole file
    config = DevStoreConfig(fault_file_cut_share=0.6, fault_file_cut_mode=mode, seed=3)
    store = devstore_factory(make_state(customers=40), config)
    export = tmp_path / "export.jsonl"
    # when a bulk query's export is read
    outcome = await runner(store, http).query(CUSTOMERS, into=export)
    # then it took more than one read, and the export is the file, whole, written once (a
    # cut read's lines neither kept nor appended to)
    assert outcome.status == "COMPLETED"
    assert len(storage.files) > 1
    assert export.read_bytes() == served(store)
    assert len(list(jsonl_lines(export))) == 40


@pytest.mark.parametrize("mode", ["abort", "truncate"])
async def test_a_bulk_mutation_through_failing_storage_has_every_answer(
    devstore_factory: DevStoreFactory,
    http: httpx.AsyncClient,
    storage: Storage,
    mode: str,
) -> None:
    # given a store whose storage fails 30% of requests and cuts 40% of its answers (the
    # upload's answer after storing it; the result file)
    config = DevStoreConfig(
        fault_file_error_share=0.3, fault_file_cut_share=0.4, fault_file_cut_mode=mode, seed=49
    )
    store = devstore_factory(make_state(customers=30), config)
    variables = [{"id": f"gid://shopify/Customer/{n}", "tags": ["vip"]} for n in range(1, 31)]
    # when a bulk mutation runs
    outcome = await runner(store, http).mutation(TAGS_ADD, variables)
    # then the upload and the result file were both asked for again, every line has its
    # answer, and the store holds the tags once
    assert outcome.status == "COMPLETED"
    assert len(storage.uploads) > 1 and len(storage.files) > 1
    assert sorted(outcome.by_line) == list(range(30))
    assert all(line["data"]["tagsAdd"]["userErrors"] == [] for line in outcome.lines)
    assert all(customer.tags == ["vip"] for customer in store.state.customers.values())


async def test_an_upload_target_that_refuses_the_file_is_replaced_by_a_new_one(
    devstore_factory: DevStoreFactory, http: httpx.AsyncClient, storage: Storage
) -> None:
    # given a store that forgets the first upload target it issued before the file reaches it
    # (as a signed policy that expired while the upload waited): it answers 400
    store = devstore_factory(make_state(customers=3))
    storage.before_upload.append(store.state.staged_uploads.clear)
    variables = [{"id": f"gid://shopify/Customer/{n}", "tags": ["vip"]} for n in range(1, 4)]
    # when a bulk mutation runs
    outcome = await runner(store, http).mutation(TAGS_ADD, variables)
    # then the file went to a second target, issued after the refusal, and the run completed
    assert outcome.status == "COMPLETED" and len(storage.uploads) == 2
    assert len(store.state.staged_uploads) == 1
    assert all(customer.tags == ["vip"] for customer in store.state.customers.values())


async def test_an_upload_refused_by_a_new_target_too_fails_the_run_saying_so(
    devstore_factory: DevStoreFactory, http: httpx.AsyncClient, storage: Storage
) -> None:
    # given a store that refuses every upload (no target it issued is kept)
    store = devstore_factory(make_state(customers=3))
    storage.before_upload.extend([store.state.staged_uploads.clear] * 3)
    # when a bulk mutation runs, then it fails after a second target refused the file too,
    # and nothing was started
    with pytest.raises(BulkError, match=r"staged upload failed: HTTP 400, from a new target too"):
        await runner(store, http).mutation(TAGS_ADD, [{"id": "gid://shopify/Customer/1"}])
    assert len(storage.uploads) == 2 and not store.state.bulk_operations


async def test_a_result_file_that_stays_short_is_a_transient_error_leaving_no_export(
    devstore_factory: DevStoreFactory,
    http: httpx.AsyncClient,
    storage: Storage,
    tmp_path: Path,
) -> None:
    # given a store that serves every result file short, as if it were whole
    config = DevStoreConfig(fault_file_cut_share=1.0, fault_file_cut_mode="truncate", seed=1)
    store = devstore_factory(make_state(customers=40), config)
    export = tmp_path / "export.jsonl"
    # when a bulk query's export is read, then it fails after its five reads, saying so
    with pytest.raises(TransientError, match="result file could not be read in 5 attempts"):
        await runner(store, http).query(CUSTOMERS, into=export)
    assert len(storage.files) == 5
    # and nothing of the short reads is left to be taken for the export
    assert export.read_bytes() == b""


async def test_a_refused_result_url_is_not_asked_again(
    devstore_factory: DevStoreFactory,
    http: httpx.AsyncClient,
    storage: Storage,
    tmp_path: Path,
) -> None:
    # given a store whose result file is gone when the client asks for it (HTTP 404), the
    # operation still giving the same URL
    store = devstore_factory(make_state(customers=5))
    storage.before_file.append(store.state.bulk_results.clear)
    # when a bulk query's export is read, then the refusal is reported, after one request
    with pytest.raises(BulkError, match=r"its result file was refused \(HTTP 404\)"):
        await runner(store, http).query(CUSTOMERS, into=tmp_path / "export.jsonl")
    assert len(storage.files) == 1


async def test_an_expired_result_file_says_only_a_new_run_gets_its_data(
    devstore_factory: DevStoreFactory,
    http: httpx.AsyncClient,
    storage: Storage,
    tmp_path: Path,
) -> None:
    # given an operation whose result file expired by the time it is read (Shopify: EXPIRED,
    # "The bulk operation URL has expired")
    store = devstore_factory(make_state(customers=5))

    def expire() -> None:
        store.state.bulk_results.clear()
        for stored in store.state.bulk_operations.values():
            stored.status = "EXPIRED"

    storage.before_file.append(expire)
    # when a bulk query's export is read, then the error says what happened and what to do
    with pytest.raises(BulkError, match=r"has expired .* only running it again gets its data"):
        await runner(store, http).query(CUSTOMERS, into=tmp_path / "export.jsonl")
    assert len(storage.files) == 1


async def test_a_refused_result_url_is_read_from_the_url_the_operation_gives_again(
    devstore_factory: DevStoreFactory,
    http: httpx.AsyncClient,
    storage: Storage,
    tmp_path: Path,
) -> None:
    # given an operation whose result file moved to a new URL (as a URL signed again would)
    # by the time the client reads the first one
    store = devstore_factory(make_state(customers=5))

    def move() -> None:
        ((token, content),) = store.state.bulk_results.items()
        store.state.bulk_results = {"resigned": content}
        for stored in store.state.bulk_operations.values():
            stored.url = (stored.url or "").replace(token, "resigned")

    storage.before_file.append(move)
    export = tmp_path / "export.jsonl"
    # when a bulk query's export is read
    await runner(store, http).query(CUSTOMERS, into=export)
    # then the first URL's 404 led to a poll of the operation, and its new URL was read
    assert storage.files[0] != storage.files[1] == "/bulk-results/resigned.jsonl"
    assert export.read_bytes() == served(store)


FILE_URL = "https://storage.example/result.jsonl"


def storage_of(*files: httpx.Response) -> tuple[httpx.AsyncClient, list[str]]:
    """A storage that answers `files` in turn, and the paths it was asked for."""
    answers, asked = list(files), []

    def serve(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        return answers.pop(0)

    return httpx.AsyncClient(transport=httpx.MockTransport(serve)), asked


def scripted(
    node: dict[str, Any], *files: httpx.Response, again: dict[str, Any] | None = None
) -> tuple[BulkRunner, list[str]]:
    """A runner whose Admin API answers a started query, then `node` for it (and `again` when
    asked for it again); and whose storage answers `files` in turn (the paths asked are
    recorded)."""
    started = {"id": node["id"], "status": "CREATED"}
    fake = Fake(
        ok({"bulkOperationRunQuery": {"bulkOperation": started, "userErrors": []}}),
        ok({"node": node}),
        *([] if again is None else [ok({"node": again})]),
    )
    http, asked = storage_of(*files)
    return BulkRunner(fake.client(), http, sleep=fake.sleep), asked


async def test_a_file_shorter_than_its_size_is_read_again_though_it_ends_cleanly(
    tmp_path: Path,
) -> None:
    # given an operation whose file has two lines (fileSize 16), first served without its
    # second line (a clean end, between lines)
    whole = b'{"a":1}\n{"b":2}\n'
    node = {**operation("COMPLETED"), "url": FILE_URL, "fileSize": str(len(whole))}
    run, asked = scripted(
        node, httpx.Response(200, content=whole[:8]), httpx.Response(200, content=whole)
    )
    export = tmp_path / "export.jsonl"
    # when it is read, then the short file was read again, and the export is whole
    await run.query("{ orders { edges { node { id } } } }", into=export)
    assert len(asked) == 2
    assert list(jsonl_lines(export)) == [{"a": 1}, {"b": 2}]


async def test_a_failed_operations_partial_data_cut_within_a_line_keeps_its_whole_lines(
    tmp_path: Path,
) -> None:
    # given a failed operation whose partial data ends within a line (the data itself, not
    # its transfer: asking again gives the same)
    node = {**operation("FAILED"), "partialDataUrl": FILE_URL, "errorCode": "TIMEOUT"}
    run, asked = scripted(node, httpx.Response(200, content=b'{"a":1}\n{"b":'))
    export = tmp_path / "export.jsonl"
    # when it is read
    outcome = await run.query("{ orders { edges { node { id } } } }", into=export)
    # then its whole lines are kept, and the cut one is never parsed as data
    assert outcome.status == "FAILED" and len(asked) == 1
    assert list(jsonl_lines(export)) == [{"a": 1}]
    assert json.loads(export.read_bytes()) == {"a": 1}


@pytest.mark.parametrize("status", [408, 429])
async def test_a_result_file_answered_not_now_is_asked_again(status: int, tmp_path: Path) -> None:
    # given a storage that answers the first read "not now" (408, 429: not a refusal)
    whole = b'{"a":1}\n'
    node = {**operation("COMPLETED"), "url": FILE_URL, "fileSize": str(len(whole))}
    run, asked = scripted(node, httpx.Response(status), httpx.Response(200, content=whole))
    export = tmp_path / "export.jsonl"
    # when the export is read, then the same URL was asked again, and the export is whole
    await run.query("{ orders { edges { node { id } } } }", into=export)
    assert asked == ["/result.jsonl"] * 2
    assert export.read_bytes() == whole


async def test_a_refusal_after_a_short_read_leaves_no_export(tmp_path: Path) -> None:
    # given a result file first served short, then refused (the operation giving the same URL
    # when asked again)
    whole = b'{"a":1}\n{"b":2}\n'
    node = {**operation("COMPLETED"), "url": FILE_URL, "fileSize": str(len(whole))}
    run, asked = scripted(
        node, httpx.Response(200, content=whole[:8]), httpx.Response(403), again=node
    )
    export = tmp_path / "export.jsonl"
    # when the export is read, then the refusal is reported, and nothing of the short read is
    # left to be taken for the export
    with pytest.raises(BulkError, match=r"refused \(HTTP 403\)"):
        await run.query("{ orders { edges { node { id } } } }", into=export)
    assert len(asked) == 2 and export.read_bytes() == b""


def staged_mutation(*nodes: dict[str, Any]) -> list[httpx.Response]:
    """The Admin API's answers to a bulk mutation: its upload target, its start, then `nodes`
    (each poll of the operation)."""
    target = {
        "url": "https://storage.example/upload",
        "resourceUrl": None,
        "parameters": [{"name": "key", "value": "tmp/variables.jsonl"}],
    }
    started = {"id": nodes[0]["id"], "status": "CREATED"}
    return [
        ok({"stagedUploadsCreate": {"stagedTargets": [target], "userErrors": []}}),
        ok({"bulkOperationRunMutation": {"bulkOperation": started, "userErrors": []}}),
        *(ok({"node": node}) for node in nodes),
    ]


@pytest.mark.parametrize("status", [408, 429])
async def test_an_upload_answered_not_now_is_posted_again_to_the_same_target(
    status: int,
) -> None:
    # given a storage that answers the first upload "not now"
    lines = b'{"__lineNumber":0,"data":{}}\n'
    node = {**operation("COMPLETED"), "url": FILE_URL, "fileSize": str(len(lines))}
    fake = Fake(*staged_mutation(node))
    http, asked = storage_of(
        httpx.Response(status), httpx.Response(201), httpx.Response(200, content=lines)
    )
    run = BulkRunner(fake.client(), http, sleep=fake.sleep)
    # when a bulk mutation runs
    outcome = await run.mutation(TAGS_ADD, [{"id": "gid://shopify/Customer/1"}])
    # then the file went to the same target again, with no new target asked for
    assert asked == ["/upload", "/upload", "/result.jsonl"]
    assert sorted(outcome.by_line) == [0]


async def test_a_bulk_mutations_answers_are_read_from_the_url_the_operation_gives_again() -> None:
    # given a bulk mutation whose result URL is refused, and signed again when asked for
    lines = b'{"__lineNumber":0,"data":{}}\n'
    first = {**operation("COMPLETED"), "url": FILE_URL, "fileSize": str(len(lines))}
    again = {**first, "url": "https://storage.example/resigned.jsonl"}
    fake = Fake(*staged_mutation(first, again))
    http, asked = storage_of(
        httpx.Response(201), httpx.Response(403), httpx.Response(200, content=lines)
    )
    # when it runs, then its answers come from the new URL
    outcome = await BulkRunner(fake.client(), http, sleep=fake.sleep).mutation(
        TAGS_ADD, [{"id": "gid://shopify/Customer/1"}]
    )
    assert asked == ["/upload", "/result.jsonl", "/resigned.jsonl"]
    assert sorted(outcome.by_line) == [0]
