"""Bulk operations: a mutation run over a staged JSONL upload, and a bulk query's JSONL export.

A bulk mutation: `stagedUploadsCreate` issues an upload target, the JSONL of variables goes
there (multipart POST, as to S3/GCS), `bulkOperationRunMutation` starts the run, polling
`node(id:)` follows it, and its result file (one response per input line, with `__lineNumber`)
is read back. The upload and result URLs belong to a storage service, not to the Admin API: the
access token is never sent to them. A result URL is itself a credential (on Shopify a signed
storage URL, good for a week, that lets anyone holding it read the file): it is never logged.

A result file is taken whole or not at all: a read that fails part-way (a 5xx, a dropped
connection, a file shorter than the operation's `fileSize` or ending within a line) starts again
from the top into a fresh file, and after the attempts ends in TransientError with nothing of it
kept; a line is never parsed until it is whole. A refusal (a 4xx: the URL expired) is not asked
again: the operation is, once, for its status and a URL (see `_read`). An upload is retried the
same way; a target that refuses it is not posted to again: `stagedUploadsCreate` is asked, once,
for a new one.

A lost response to `bulkOperationRunMutation` is safe: each run's mutation text carries a unique
comment, so when a retry finds an operation in progress, the client can tell whether it is its
own and follow it instead of starting the work twice. Since API 2026-01 a shop may run several
operations of a type at once, so a retry may start a second run of the same work instead: the
app's bulk mutations (tags added or removed, metafields set) are idempotent, and its queries
only read.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from plugin.shopify.client import AdminClient, QueryError, Sleep, TransientError

TERMINAL = frozenset({"COMPLETED", "FAILED", "CANCELED", "EXPIRED"})
# Refusals that mean "the shop runs as many bulk operations as it may; try later": Shopify's
# guides name OPERATION_IN_PROGRESS, and its error codes LIMIT_REACHED ("Bulk operations limit
# reached"); which one a start past the limit gets is not documented, so both wait.
_BUSY = frozenset({"OPERATION_IN_PROGRESS", "LIMIT_REACHED"})
# How long a start waits for the shop's other bulk operations, holding its job's lease.
BUSY_WAIT_SECONDS = 30 * 60.0

_STAGE = """
mutation Stage($input: [StagedUploadInput!]!) {
  stagedUploadsCreate(input: $input) {
    stagedTargets { url resourceUrl parameters { name value } }
    userErrors { field message }
  }
}"""
_RUN_MUTATION = """
mutation RunBulk($mutation: String!, $path: String!) {
  bulkOperationRunMutation(mutation: $mutation, stagedUploadPath: $path) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}"""
_RUN_QUERY = """
mutation RunBulkQuery($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}"""
_FIELDS = "id status errorCode objectCount fileSize url partialDataUrl query"
_POLL = f"query Poll($id: ID!) {{ node(id: $id) {{ ... on BulkOperation {{ {_FIELDS} }} }} }}"
_CURRENT = f"""
query Current($type: BulkOperationType!) {{ currentBulkOperation(type: $type) {{ {_FIELDS} }} }}"""

# Set while this task reads a result file: httpx logs each request's URL (at INFO), and the
# result file's is shown by its origin alone.
_reading_result: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "reading_bulk_result", default=False
)


class _ResultUrlHidden(logging.Filter):
    """On httpx's logger: each URL logged while the task reads a result file, by its origin."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _reading_result.get() and isinstance(record.args, tuple):
            record.args = tuple(_origin(a) if isinstance(a, httpx.URL) else a for a in record.args)
        return True


def _origin(url: httpx.URL) -> str:
    return f"{url.scheme}://{url.netloc.decode('ascii')}/(a bulk operation's result file)"


def _hide_result_urls() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _ResultUrlHidden) for f in logger.filters):
        logger.addFilter(_ResultUrlHidden())


OnPoll = Callable[[str, int], None]  # (status, objects so far)
log = logging.getLogger(__name__)


class BulkError(QueryError):
    """The store refused or failed a bulk operation."""


@dataclass
class BulkOutcome:
    operation_id: str
    status: str
    error_code: str | None
    lines: list[dict[str, Any]] = field(default_factory=list)  # the result file, parsed

    @property
    def by_line(self) -> dict[int, dict[str, Any]]:
        """A bulk mutation's responses by the input line they answer."""
        return {int(line["__lineNumber"]): line for line in self.lines if "__lineNumber" in line}


class BulkRunner:
    """Runs bulk operations for one shop through its AdminClient."""

    def __init__(
        self,
        client: AdminClient,
        http: httpx.AsyncClient,
        *,
        sleep: Sleep,
        poll_seconds: float = 1.0,
        poll_cap_seconds: float = 10.0,
        upload_attempts: int = 5,
        busy_wait_seconds: float = BUSY_WAIT_SECONDS,
    ) -> None:
        self._client = client
        self._http = http
        self._sleep = sleep
        self._poll = poll_seconds
        self._poll_cap = poll_cap_seconds
        self._upload_attempts = upload_attempts
        self._busy_wait = busy_wait_seconds

    async def mutation(self, mutation: str, variables: Iterable[Mapping[str, Any]]) -> BulkOutcome:
        """Run `mutation` once per variables object; the outcome holds one response per line."""
        marked = f"# clvsync {uuid.uuid4()}\n{mutation.strip()}"
        path = await self._upload(
            "".join(json.dumps(v, separators=(",", ":")) + "\n" for v in variables).encode()
        )
        return await self._start(
            _RUN_MUTATION, {"mutation": marked, "path": path}, "bulkOperationRunMutation", marked
        )

    async def query(self, query: str, into: Path, on_poll: OnPoll | None = None) -> BulkOutcome:
        """Run a bulk query; its JSONL export is written to the file `into` (streamed: a large
        shop's export never sits in memory; read it with `jsonl_lines`). `on_poll(status,
        objects so far)` hears of each poll of the operation (a progress display)."""
        marked = f"# clvsync {uuid.uuid4()}\n{query.strip()}"
        return await self._start(
            _RUN_QUERY, {"query": marked}, "bulkOperationRunQuery", marked, on_poll, into
        )

    async def _start(
        self,
        run: str,
        variables: dict[str, Any],
        field_name: str,
        marked: str,
        on_poll: OnPoll | None = None,
        into: Path | None = None,
    ) -> BulkOutcome:
        kind = "MUTATION" if field_name == "bulkOperationRunMutation" else "QUERY"
        began = self._client.now()
        while True:
            if self._client.now() - began > self._busy_wait:
                raise BulkError(
                    f"bulk {kind.lower()} not started: the shop's bulk operations stayed busy "
                    f"for {self._busy_wait / 60:.0f} minutes; the next run tries again"
                )
            data = await self._client.execute(run, variables, cost=10)
            started = data[field_name]
            if started.get("bulkOperation"):
                return await self._follow(
                    started["bulkOperation"]["id"], on_poll=on_poll, into=into
                )
            codes = {error.get("code") for error in started.get("userErrors") or ()}
            if codes.isdisjoint(_BUSY):
                raise BulkError(f"bulk {kind.lower()} refused: {_messages(started)}")
            current = await self._current(kind)
            if current is not None and marked in (current.get("query") or ""):
                # ours, started by a call whose response was lost
                return await self._follow(current["id"], on_poll=on_poll, into=into)
            if current is not None and current.get("status") not in TERMINAL:
                await self._follow(current["id"], read=False)  # someone else's: wait it out
            else:  # the shop's other operations hold the places: wait before asking again
                await self._sleep(self._poll)

    async def _upload(self, content: bytes) -> str:
        """The staged upload path of `content`. A target that refuses it (a 4xx: its signed
        policy expired while the upload waited, say) is replaced once, by a new one."""
        url, form = await self._stage(len(content))
        refused = await self._post(url, form, content)
        if refused is not None:
            log.info(
                "staged upload target refused the file (HTTP %d); asking for a new one", refused
            )
            url, form = await self._stage(len(content))
            refused = await self._post(url, form, content)
        if refused is not None:
            raise BulkError(f"staged upload failed: HTTP {refused}, from a new target too")
        return form["key"]

    async def _stage(self, size: int) -> tuple[str, dict[str, str]]:
        """An upload target from stagedUploadsCreate: its URL and form fields."""
        data = await self._client.execute(
            _STAGE,
            {
                "input": [
                    {
                        "resource": "BULK_MUTATION_VARIABLES",
                        "filename": "variables.jsonl",
                        "mimeType": "text/jsonl",
                        "httpMethod": "POST",
                        "fileSize": str(size),
                    }
                ]
            },
            cost=10,
        )
        staged = data["stagedUploadsCreate"]
        if staged.get("userErrors") or not staged.get("stagedTargets"):
            raise BulkError(f"staged upload refused: {_messages(staged)}")
        target = staged["stagedTargets"][0]
        return str(target["url"]), {p["name"]: p["value"] for p in target["parameters"]}

    async def _post(self, url: str, form: dict[str, str], content: bytes) -> int | None:
        """Post `content` to the upload target, retrying 5xx and dropped connections: None once
        it is stored, or the status of a refusal (a 4xx)."""
        for attempt in range(1, self._upload_attempts + 1):
            try:
                response = await self._http.post(
                    url,
                    data=form,
                    files={"file": ("variables.jsonl", content, "text/jsonl")},
                )
            except httpx.TransportError:
                response = None
            if response is not None and response.status_code < 300:
                return None
            if response is not None and not _retryable(response.status_code):
                return response.status_code
            await self._sleep(min(self._poll_cap, self._poll * 2**attempt))
        raise TransientError("staged upload kept failing")

    async def _current(self, kind: str) -> dict[str, Any] | None:
        data = await self._client.execute(_CURRENT, {"type": kind}, cost=2)
        current = data.get("currentBulkOperation")
        return current if isinstance(current, dict) else None

    async def _follow(
        self,
        operation_id: str,
        *,
        read: bool = True,
        on_poll: OnPoll | None = None,
        into: Path | None = None,
    ) -> BulkOutcome:
        node = await self._until_done(operation_id, on_poll)
        outcome = BulkOutcome(operation_id, node["status"], node.get("errorCode"))
        if into is not None:
            into.write_bytes(b"")  # no result file (nothing matched): an empty export
        if read and into is not None:
            await self._read(operation_id, node, lambda: into.open("wb"))
        elif read:
            buffers: list[io.BytesIO] = []

            def buffer() -> contextlib.nullcontext[IO[bytes]]:
                buffers.append(io.BytesIO())
                return contextlib.nullcontext(buffers[-1])

            if await self._read(operation_id, node, buffer):
                lines = buffers[-1].getvalue().splitlines()
                outcome.lines = [json.loads(line) for line in lines if line.strip()]
        return outcome

    async def _until_done(self, operation_id: str, on_poll: OnPoll | None) -> dict[str, Any]:
        """The operation, polled until it ends."""
        delay = self._poll
        while True:
            node = await self._node(operation_id)
            if on_poll is not None:
                on_poll(str(node.get("status")), int(node.get("objectCount") or 0))
            if node.get("status") in TERMINAL:
                return node
            await self._sleep(delay)
            delay = min(self._poll_cap, delay * 1.5)

    async def _node(self, operation_id: str) -> dict[str, Any]:
        data = await self._client.execute(_POLL, {"id": operation_id}, cost=2)
        node = data.get("node")
        return node if isinstance(node, dict) else {}

    async def _read(self, operation_id: str, node: Mapping[str, Any], sink: Sink) -> bool:
        """The operation's result file, whole, into a fresh `sink()`; False if it has none."""
        file = _ResultFile.of(node)
        if file is None:
            return False
        refused = await self._download(file, sink)
        if refused is None:
            return True
        # A 4xx (but 408 or 429) is not worth asking the same URL again. Shopify's reference
        # (https://shopify.dev/docs/api/admin-graphql/latest/objects/BulkOperation) says `url`
        # and `partialDataUrl` "expire after seven days" ("The URL expires 7 days after the
        # operation completes", 2024-01 edition), and BulkOperationStatus EXPIRED means "The
        # bulk operation URL has expired". It does not say whether asking for the operation
        # again signs a new URL, so the operation is asked for once more: EXPIRED means the
        # file is gone (only a new run gets the data again); a different URL is read; the
        # same URL again is a refusal this run cannot get past.
        again = await self._node(operation_id)
        if again.get("status") == "EXPIRED":
            raise BulkError(
                f"bulk operation {operation_id}: its result file has expired (Shopify keeps it "
                "seven days after the operation ends); only running it again gets its data"
            )
        fresh = _ResultFile.of(again)
        if fresh is not None and fresh.url != file.url:
            refused = await self._download(fresh, sink)
            if refused is None:
                return True
        raise BulkError(
            f"bulk operation {operation_id}: its result file was refused (HTTP {refused}), "
            "and asking for the operation again gave no other URL"
        )

    async def _download(self, file: _ResultFile, sink: Sink) -> int | None:
        """The result file streamed into a fresh `sink()`, started again from the top while
        the transfer fails (5xx, 408, 429, a dropped connection, a file that ends short): None
        once it is whole; the status of a refusal (any other 4xx), which asking again would
        not change, the sink left empty. After the attempts, the sink is left empty and
        TransientError raised."""
        _hide_result_urls()
        problem = "not read"
        for attempt in range(1, self._upload_attempts + 1):
            reading = _reading_result.set(True)
            try:
                async with self._http.stream("GET", file.url) as response:
                    if response.status_code == 200:
                        short = await _transfer(response, file, sink)
                        if short is None:
                            return None
                        problem = short
                    elif _refused(response.status_code):
                        _empty(sink)
                        return response.status_code
                    else:
                        problem = f"HTTP {response.status_code}"
            except (httpx.TransportError, httpx.DecodingError) as exc:
                problem = f"the connection failed ({type(exc).__name__})"
            finally:
                _reading_result.reset(reading)
            log.warning(
                "bulk result file not read (attempt %d of %d): %s",
                attempt,
                self._upload_attempts,
                problem,
            )
            await self._sleep(min(self._poll_cap, self._poll * 2**attempt))
        _empty(sink)
        raise TransientError(
            f"the bulk operation's result file could not be read in {self._upload_attempts} "
            f"attempts (the last: {problem})"
        )


Sink = Callable[[], ContextManager[IO[bytes]]]


@dataclass(frozen=True)
class _ResultFile:
    """Where an ended operation's file is, and its size in bytes when Shopify gives it
    (`fileSize`: "File size in bytes of the file in the url field", so not for partial data)."""

    url: str
    size: int | None
    partial: bool  # a failed operation's partial data (`partialDataUrl`)

    @classmethod
    def of(cls, node: Mapping[str, Any]) -> _ResultFile | None:
        if node.get("url"):
            size = node.get("fileSize")
            return cls(str(node["url"]), None if size is None else int(size), partial=False)
        if node.get("partialDataUrl"):
            return cls(str(node["partialDataUrl"]), None, partial=True)
        return None


async def _transfer(response: httpx.Response, file: _ResultFile, sink: Sink) -> str | None:
    """The response's lines into a fresh `sink()`, each only once it is whole: None if the
    file came whole; else what was wrong. A file is short when it has fewer bytes than
    `fileSize` says (a cut between lines shows no other way), or when its last line, without
    its newline, is not a JSON object (a cut within a line: a whole line parses, any shorter
    part of one does not)."""
    received = 0
    pending = bytearray()
    with sink() as out:
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            pending += chunk
            whole = pending.rfind(b"\n") + 1
            if whole:
                out.write(pending[:whole])
                del pending[:whole]
        if file.size is not None and received < file.size:
            return f"the file ended after {received} of its {file.size} bytes"
        if pending.strip() and not _whole_line(pending):
            if not file.partial:
                return f"the file ended within a line, after {received} bytes"
            # a failed operation's partial data may itself end within a line: its lines are
            # incomplete by nature, and a line left out is a line without a result
            log.warning("bulk partial data: its last line is incomplete, left out")
        elif pending.strip():
            out.write(pending)
    return None


def _whole_line(line: bytes | bytearray) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def _empty(sink: Sink) -> None:
    """Nothing of a partial read is left in the sink for a caller to take as the file."""
    with sink():
        pass


def _refused(status: int) -> bool:
    """A storage answer that asking the same URL again would not change: a 4xx, but 408 and
    429, which mean "not now"."""
    return 400 <= status < 500 and not _retryable(status)


def _retryable(status: int) -> bool:
    """A storage answer worth asking again: a 5xx, a request timeout, too many requests."""
    return status >= 500 or status in (408, 429)


def jsonl_lines(path: Path) -> Iterator[dict[str, Any]]:
    """A bulk query's export, one object per line, read as it goes."""
    with path.open("rb") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def _messages(payload: Mapping[str, Any]) -> str:
    errors = payload.get("userErrors") or ()
    return "; ".join(str(error.get("message")) for error in errors) or "no detail given"
