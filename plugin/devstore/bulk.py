"""Bulk operations: bulkOperationRunQuery (JSONL with `__parentId` child lines) and
bulkOperationRunMutation (one mutation per line of a staged JSONL upload, results with
`__lineNumber`). They run as background tasks on the server's event loop, step by step, so clients
see CREATED, RUNNING and COMPLETED through `node(id:)` and `currentBulkOperation`.

Since API 2026-01 `groupObjects` defaults to false and Shopify says to "avoid relying on a
particular sequence of lines": ungrouped output here scatters child lines (some before their
parent, some after later parents, some in a later step), deterministically per seed and operation,
so a reader that assumes grouping fails in tests rather than in production."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from graphql import (
    FieldNode,
    FragmentSpreadNode,
    GraphQLSchema,
    InlineFragmentNode,
    OperationType,
    SelectionSetNode,
)

from plugin.devstore.config import DevStoreConfig
from plugin.devstore.context import BulkWindow, ResolveContext
from plugin.devstore.executor import ParsedRequest, parse_request, run_operation
from plugin.devstore.models import BulkOperation
from plugin.devstore.state import DevStoreState

UserErrorDict = dict[str, object]
ACTIVE = ("CREATED", "RUNNING")
BULK_ROOTS = {"customers", "products", "orders"}
FIVE_AT_A_TIME_FROM = "2026-01"  # "unstable" sorts after every dated version, as it should
NOT_IN_BULK_MUTATIONS = {"bulkOperationRunQuery", "bulkOperationRunMutation", "stagedUploadsCreate"}


def _is_connection(value: Any) -> bool:
    return isinstance(value, Mapping) and (
        isinstance(value.get("edges"), list) or isinstance(value.get("nodes"), list)
    )


def _items(value: Mapping[str, Any]) -> list[Any]:
    if isinstance(value.get("nodes"), list):
        return list(value["nodes"])
    return [edge["node"] for edge in value["edges"]]


def flatten(item: Mapping[str, Any], parent_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Shopify's JSONL: one line per object; nested connection items follow as their own lines."""
    line = {key: value for key, value in item.items() if not _is_connection(value)}
    if parent_id is not None:
        line["__parentId"] = parent_id
    yield line
    for value in item.values():
        if _is_connection(value):
            for child in _items(value):
                yield from flatten(child, item.get("id"))


class Scatter:
    """Orders one ungrouped export: root lines keep their order, and each child line lands at a
    random place among them (before its parent, or after later ones); a share of the children
    is held back to a later step, as Shopify's ungrouped files keep no child near its parent."""

    def __init__(self, seed: str) -> None:
        self._random = random.Random(seed)
        self._held: list[dict[str, Any]] = []

    def step(self, lines: list[dict[str, Any]], last: bool) -> list[dict[str, Any]]:
        roots = [line for line in lines if "__parentId" not in line]
        children = self._held
        self._held = []
        for line in lines:
            if "__parentId" not in line:
                continue
            if not last and self._random.random() < 0.3:
                self._held.append(line)
            else:
                children.append(line)
        self._random.shuffle(children)
        # slot i: the children written just before root i; the last slot: after every root
        slots: list[list[dict[str, Any]]] = [[] for _ in range(len(roots) + 1)]
        for child in children:
            slots[self._random.randint(0, len(roots))].append(child)
        out: list[dict[str, Any]] = []
        for root, before in zip(roots, slots, strict=False):
            out.extend(before)
            out.append(root)
        return out + slots[-1]


def _selected_fields(
    selection_set: SelectionSetNode, fragments: Mapping[str, Any]
) -> list[FieldNode]:
    """The fields of a selection set, through inline fragments and fragment spreads."""
    fields: list[FieldNode] = []
    for selection in selection_set.selections:
        if isinstance(selection, FieldNode):
            fields.append(selection)
        elif isinstance(selection, InlineFragmentNode):
            fields.extend(_selected_fields(selection.selection_set, fragments))
        elif isinstance(selection, FragmentSpreadNode):
            fragment = fragments[selection.name.value]
            fields.extend(_selected_fields(fragment.selection_set, fragments))
    return fields


def _item_selections(
    connection: FieldNode, fragments: Mapping[str, Any]
) -> list[SelectionSetNode] | None:
    """The selections on each item of a connection field (`edges { node }` or `nodes`), or None
    when the field is not a connection."""
    if connection.selection_set is None:
        return None
    found: list[SelectionSetNode] = []
    is_connection = False
    for field in _selected_fields(connection.selection_set, fragments):
        if field.name.value == "nodes" and field.selection_set:
            is_connection = True
            found.append(field.selection_set)
        elif field.name.value == "edges" and field.selection_set:
            is_connection = True
            found.extend(
                node.selection_set
                for node in _selected_fields(field.selection_set, fragments)
                if node.name.value == "node" and node.selection_set
            )
    return found if is_connection else None


def _parents_without_id(connection: FieldNode, fragments: Mapping[str, Any]) -> list[str]:
    """Nested connections whose parent items do not select `id` (unaliased): their lines could
    carry no `__parentId`, so Shopify refuses the query."""
    missing: list[str] = []
    for items in _item_selections(connection, fragments) or ():
        fields = _selected_fields(items, fragments)
        has_id = any(f.name.value == "id" and f.alias is None for f in fields)
        for field in fields:
            if _item_selections(field, fragments) is None:
                continue
            if not has_id:
                missing.append(field.name.value)
            missing.extend(_parents_without_id(field, fragments))
    return missing


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line, separators=(",", ":")).encode() + b"\n" for line in lines)


def _root_fields(request: ParsedRequest) -> list[FieldNode]:
    return [
        node for node in request.operation.selection_set.selections if isinstance(node, FieldNode)
    ]


class BulkRunner:
    """Creates bulk operations and runs them in the background on the running event loop."""

    def __init__(self, schema: GraphQLSchema, config: DevStoreConfig) -> None:
        self.schema = schema
        self.config = config
        self._tasks: set[asyncio.Task[None]] = set()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _busy(self, context: ResolveContext, kind: str) -> BulkOperation | None:
        """The newest running operation of this type when no other may start. Shopify's guides:
        from API 2026-01, up to five bulk queries and, separately, five bulk mutations at a
        time per app and shop; before 2026-01, one of each type."""
        operations = context.state.bulk_operations.values()
        active = [op for op in operations if op.type == kind and op.status in ACTIVE]
        limit = self.config.max_concurrent_bulk_operations
        if context.api_version < FIVE_AT_A_TIME_FROM:
            limit = 1
        if len(active) < limit:
            return None
        return max(active, key=lambda op: op.id)

    def _create(self, state: DevStoreState, kind: str, query: str) -> BulkOperation:
        operation = BulkOperation(
            id=state.next_id(), type=kind, query=query, created_at=state.now_iso()
        )
        state.bulk_operations[operation.id] = operation
        return operation

    def _spawn(
        self,
        operation: BulkOperation,
        state: DevStoreState,
        work: Awaitable[list[bytes]],
        base_url: str,
    ) -> None:
        task = asyncio.get_running_loop().create_task(self._run(operation, state, work, base_url))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(
        self,
        operation: BulkOperation,
        state: DevStoreState,
        work: Awaitable[list[bytes]],
        base_url: str,
    ) -> None:
        try:
            chunks = await work
        except Exception:  # a failed operation is reported through its status, as Shopify does
            operation.status, operation.error_code = "FAILED", "INTERNAL_SERVER_ERROR"
            return
        body = b"".join(chunks)
        if body:
            token = uuid.uuid4().hex
            state.bulk_results[token] = body
            operation.url = f"{base_url}/bulk-results/{token}.jsonl"
            operation.file_size = len(body)
        operation.status, operation.completed_at = "COMPLETED", state.now_iso()

    # --- bulk query ---------------------------------------------------------------------------

    def start_query(
        self, context: ResolveContext, query: str, group_objects: bool
    ) -> tuple[BulkOperation | None, list[UserErrorDict]]:
        request = parse_request(self.schema, {"query": query})
        problem = self._query_problem(request)
        if problem is not None:
            return None, [{"field": ["query"], "message": problem, "code": "INVALID"}]
        assert isinstance(request, ParsedRequest)
        busy = self._busy(context, "QUERY")
        if busy is not None:
            message = (
                f"A bulk query operation for this app and shop is already in progress: {busy.gid}."
            )
            return None, [{"field": None, "message": message, "code": "OPERATION_IN_PROGRESS"}]
        operation = self._create(context.state, "QUERY", query)
        scatter = None if group_objects else Scatter(f"{self.config.seed}:{operation.id}")
        work = self._query_steps(operation, request, context, scatter)
        self._spawn(operation, context.state, work, context.base_url)
        return operation, []

    def _query_problem(self, request: ParsedRequest | list[Any] | None) -> str | None:
        if request is None or isinstance(request, list):
            errors = [] if request is None else [str(error) for error in request]
            return "Invalid bulk query: " + "; ".join(errors)
        roots = _root_fields(request)
        if request.operation.operation != OperationType.QUERY:
            return "Bulk queries must be queries."
        if len(roots) != 1 or roots[0].name.value not in BULK_ROOTS:
            return "Bulk queries must contain at least one connection."
        if _parents_without_id(roots[0], request.fragments):
            return "The parent 'node' field for a nested connection must select the 'id' field."
        return None

    async def _query_steps(
        self,
        operation: BulkOperation,
        request: ParsedRequest,
        context: ResolveContext,
        scatter: Scatter | None,
    ) -> list[bytes]:
        """Read the root connection window by window; with `scatter`, write it ungrouped."""
        await asyncio.sleep(self.config.bulk_start_delay_seconds)
        operation.status = "RUNNING"
        root = _root_fields(request)[0]
        root_key = root.alias.value if root.alias else root.name.value
        chunks: list[bytes] = []
        window = BulkWindow(size=self.config.bulk_rows_per_step)
        step_context = replace(context, bulk_scheduler=None, bulk_window=window)
        while True:
            result = run_operation(self.schema, request, step_context)
            if result.errors or result.data is None:
                raise RuntimeError(str(result.errors))
            lines = [line for item in _items(result.data[root_key]) for line in flatten(item)]
            last = len(window.served_ids) < window.size
            chunks.append(_jsonl(lines if scatter is None else scatter.step(lines, last)))
            operation.root_object_count += len(window.served_ids)
            operation.object_count += len(lines)
            if last:
                return chunks
            window.after_id = window.served_ids[-1]
            await asyncio.sleep(self.config.bulk_step_delay_seconds)

    # --- bulk mutation ------------------------------------------------------------------------

    def start_mutation(
        self, context: ResolveContext, mutation: str, staged_upload_path: str
    ) -> tuple[BulkOperation | None, list[UserErrorDict]]:
        request = parse_request(self.schema, {"query": mutation})
        if not isinstance(request, ParsedRequest) or not self._mutation_allowed(request):
            message = "Invalid mutation: bulk mutations take exactly one supported mutation field."
            return None, [{"field": ["mutation"], "message": message, "code": "INVALID_MUTATION"}]
        content = context.state.staged_uploads.get(staged_upload_path)
        if content is None:
            message = (
                "The JSONL file could not be found. Try uploading the file again, and check that "
                "you've entered the URL correctly for the stagedUploadPath mutation argument."
            )
            return None, [{"field": None, "message": message, "code": "NO_SUCH_FILE"}]
        busy = self._busy(context, "MUTATION")
        if busy is not None:
            message = (
                "A bulk mutation operation for this app and shop is already in progress: "
                f"{busy.gid}."
            )
            return None, [{"field": None, "message": message, "code": "OPERATION_IN_PROGRESS"}]
        operation = self._create(context.state, "MUTATION", mutation)
        work = self._mutation_steps(operation, request, content, context)
        self._spawn(operation, context.state, work, context.base_url)
        return operation, []

    def _mutation_allowed(self, request: ParsedRequest) -> bool:
        roots = _root_fields(request)
        return (
            request.operation.operation == OperationType.MUTATION
            and len(roots) == 1
            and roots[0].name.value not in NOT_IN_BULK_MUTATIONS
        )

    async def _mutation_steps(
        self,
        operation: BulkOperation,
        request: ParsedRequest,
        content: bytes,
        context: ResolveContext,
    ) -> list[bytes]:
        await asyncio.sleep(self.config.bulk_start_delay_seconds)
        operation.status = "RUNNING"
        step_context = replace(context, bulk_scheduler=None)
        run_line = self._line_runner(request, step_context)
        chunks: list[bytes] = []
        lines = [line for line in content.decode().splitlines() if line.strip()]
        for start in range(0, len(lines), self.config.bulk_rows_per_step):
            step = lines[start : start + self.config.bulk_rows_per_step]
            chunks.append(
                _jsonl([run_line(start + offset, line) for offset, line in enumerate(step)])
            )
            operation.object_count += len(step)
            operation.root_object_count += len(step)
            await asyncio.sleep(self.config.bulk_step_delay_seconds)
        return chunks

    def _line_runner(
        self, request: ParsedRequest, context: ResolveContext
    ) -> Callable[[int, str], dict[str, Any]]:
        def run(number: int, line: str) -> dict[str, Any]:
            try:
                variables = json.loads(line)
            except ValueError:
                return {
                    "errors": [{"message": "Invalid JSON on this line."}],
                    "__lineNumber": number,
                }
            parsed = ParsedRequest(
                request.document, request.operation, request.fragments, variables
            )
            result = run_operation(self.schema, parsed, context)
            out: dict[str, Any] = {"data": result.data}
            if result.errors:
                out["errors"] = [error.formatted for error in result.errors]
            out["__lineNumber"] = number
            return out

        return run
