"""The dev store as an ASGI app: Admin GraphQL over HTTP, staged uploads, bulk result files.

`create_devstore_app(state, config)` builds a Starlette app; `serve_devstore(...)` runs it under
uvicorn (for `clvsync devstore serve`). Everything hangs off the app: no module-level state.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from plugin.devstore.bulk import BulkRunner
from plugin.devstore.config import DEFAULT_TOKEN, DevStoreConfig
from plugin.devstore.context import ResolveContext
from plugin.devstore.executor import AdminGraphQL, GraphQLReply
from plugin.devstore.faults import FaultInjector, FaultPlan, FilePlan
from plugin.devstore.schema import build_devstore_schema
from plugin.devstore.state import DevStoreState
from plugin.devstore.throttle import Clock, LeakyBucketThrottle
from plugin.devstore.uploads import UploadError, find_result, parse_multipart, store_upload

__all__ = ["DevStoreConfig", "DevStoreServer", "create_devstore_app", "serve_devstore"]

INVALID_TOKEN = "[API] Invalid API key or access token (unrecognized login or wrong password)"


class CutResponse(Response):
    """The first `sent` bytes of a body, and no more. `abort`: the whole length is declared, so
    the client sees the connection close early, as when a response is dropped (returning
    without finishing the body makes the server close it); otherwise only the part's length
    is, so the short body comes as a clean, complete response."""

    def __init__(
        self, body: bytes, sent: int, *, status_code: int, media_type: str, abort: bool
    ) -> None:
        super().__init__(status_code=status_code)
        self._whole, self._sent, self._media, self._abort = body, sent, media_type, abort

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        length = len(self._whole) if self._abort else self._sent
        headers = [
            (b"content-type", self._media.encode()),
            (b"content-length", str(length).encode()),
        ]
        await send({"type": "http.response.start", "status": self.status_code, "headers": headers})
        part = self._whole[: self._sent]
        await send({"type": "http.response.body", "body": part, "more_body": self._abort})


def _aborted_answer() -> CutResponse:
    """Half an answer, then a closed connection: what a client sees of a dropped response."""
    body = b'{"data":{'.ljust(4096)
    return CutResponse(body, 9, status_code=200, media_type="application/json", abort=True)


def _json(status: int, body: Any, request_id: str) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={"X-Request-Id": request_id})


class DevStoreServer:
    """The dev store's shops, GraphQL engine, throttle, faults and bulk runner for one app."""

    def __init__(
        self, states: Iterable[DevStoreState], config: DevStoreConfig, clock: Clock
    ) -> None:
        self.states = {state.domain: state for state in states}
        self.config = config
        schema = build_devstore_schema()
        throttle = LeakyBucketThrottle(config.bucket_size, config.restore_rate, clock)
        self.graphql = AdminGraphQL(
            schema,
            throttle,
            max_query_cost=config.max_query_cost,
            throttle_status_code=config.throttle_status_code,
        )
        self.bulk = BulkRunner(schema, config)
        self.faults = FaultInjector(
            error_share=config.fault_error_share,
            error_status=config.fault_error_status,
            latency_seconds=config.fault_latency_seconds,
            latency_jitter_seconds=config.fault_latency_jitter_seconds,
            drop_share=config.fault_drop_share,
            file_error_share=config.fault_file_error_share,
            file_cut_share=config.fault_file_cut_share,
            seed=config.seed,
        )

    def shop_for(self, token: str | None) -> DevStoreState | None:
        if not self.config.access_tokens:
            only = list(self.states.values())
            return only[0] if token == DEFAULT_TOKEN and len(only) == 1 else None
        domain = self.config.access_tokens.get(token or "")
        return None if domain is None else self.states.get(domain)

    async def graphql_endpoint(self, request: Request) -> Response:
        request_id = str(uuid.uuid4())
        if request.path_params["version"] not in self.config.api_versions:
            return _json(404, {"errors": "Not Found"}, request_id)
        token = request.headers.get("X-Shopify-Access-Token")
        state = self.shop_for(token)
        if token is None or state is None:
            return _json(401, {"errors": INVALID_TOKEN}, request_id)
        plan = self.faults.plan()
        if plan.latency_seconds > 0:
            await asyncio.sleep(plan.latency_seconds)
        if plan.error_status is not None:
            return _json(plan.error_status, _internal_error(request_id), request_id)
        payload = await _request_payload(request)
        context = ResolveContext(
            state,
            str(request.base_url).rstrip("/"),
            self.config.app_id,
            self.bulk,
            api_version=request.path_params["version"],
            shopify_namespaces_writable=self.config.shopify_namespaces_writable,
            access_scopes=self.config.access_scopes,
        )
        reply = self.graphql.handle(state.domain, payload, context)
        return self._respond(reply, plan, request_id)

    def _respond(self, reply: GraphQLReply, plan: FaultPlan, request_id: str) -> Response:
        if reply.executed_mutation and plan.drop_after_apply:
            if self.config.fault_drop_mode == "abort":
                return _aborted_answer()
            return _json(502, {"errors": "Bad Gateway"}, request_id)
        response = _json(reply.status_code, reply.body, request_id)
        if reply.status_code == 429 and reply.retry_after_seconds is not None:
            # Like Shopify's REST 429s: a hint in seconds, which clients may use or ignore.
            response.headers["Retry-After"] = f"{max(reply.retry_after_seconds, 0.1):.1f}"
        return response

    async def staged_upload_post(self, request: Request) -> Response:
        plan = self.faults.plan_file()
        if plan.error_status is not None:  # before anything is stored
            return _storage_error(plan.error_status)
        try:
            fields = parse_multipart(request.headers.get("content-type", ""), await request.body())
            key = fields["key"].decode()
            store_upload(self.states.values(), key, fields["file"])
        except (UploadError, KeyError, UnicodeDecodeError) as error:
            return Response(f"Bad upload: {error}", status_code=400, media_type="text/plain")
        return self._storage_answer(plan, _upload_created(str(request.url), key))

    async def staged_upload_put(self, request: Request) -> Response:
        plan = self.faults.plan_file()
        if plan.error_status is not None:
            return _storage_error(plan.error_status)
        key = request.path_params["key"]
        try:
            store_upload(self.states.values(), key, await request.body())
        except UploadError as error:
            return Response(f"Bad upload: {error}", status_code=400, media_type="text/plain")
        return self._storage_answer(plan, Response(status_code=200))  # no body: never cut

    async def bulk_result(self, request: Request) -> Response:
        plan = self.faults.plan_file()
        if plan.error_status is not None:
            return _storage_error(plan.error_status)
        token = request.path_params["name"].removesuffix(".jsonl")
        content = find_result(self.states.values(), token)
        if content is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        return self._storage_answer(plan, Response(content, media_type="application/jsonl"))

    def _storage_answer(self, plan: FilePlan, response: Response) -> Response:
        """`response`, or the part of its body the plan lets through (the file served, or an
        upload's answer, the upload already stored)."""
        sent = plan.cut_length(len(response.body))
        if sent is None:
            return response
        return CutResponse(
            bytes(response.body),
            sent,
            status_code=response.status_code,
            media_type=response.media_type or "application/octet-stream",
            abort=self.config.fault_file_cut_mode == "abort",
        )

    async def health(self, _: Request) -> Response:
        return JSONResponse({"ok": True, "shops": sorted(self.states)})


async def _request_payload(request: Request) -> Any:
    """JSON `{query, variables, operationName}`, or a bare query sent as application/graphql;
    None for a body that is neither (invalid UTF-8 included), which Shopify answers with 400."""
    body = await request.body()
    try:
        if request.headers.get("content-type", "").startswith("application/graphql"):
            return {"query": body.decode()}
        return json.loads(body)
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are both ValueErrors
        return None


def _internal_error(request_id: str) -> dict[str, Any]:
    message = (
        "Internal error. Looks like something went wrong on our end.\n"
        f"Request ID: {request_id} (include this in support requests)."
    )
    error = {
        "message": message,
        "extensions": {"code": "INTERNAL_SERVER_ERROR", "requestId": request_id},
    }
    return {"errors": [error]}


def _storage_error(status: int) -> Response:
    """A storage service's failure, before it stored or served anything."""
    return Response("Storage unavailable; try again", status_code=status, media_type="text/plain")


def _upload_created(location: str, key: str) -> Response:
    body = (
        "<?xml version='1.0' encoding='UTF-8'?><PostResponse>"
        f"<Location>{location}</Location><Bucket>devstore-staged-uploads</Bucket>"
        f"<Key>{key}</Key></PostResponse>"
    )
    return Response(body, status_code=201, media_type="application/xml")


def create_devstore_app(
    state: DevStoreState | Iterable[DevStoreState],
    config: DevStoreConfig | None = None,
    *,
    clock: Clock = time.monotonic,
) -> Starlette:
    """The dev store app for one shop (or several, each reached by its own access token)."""
    states = [state] if isinstance(state, DevStoreState) else list(state)
    server = DevStoreServer(states, config or DevStoreConfig(), clock)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await server.bulk.aclose()

    routes = [
        Route("/admin/api/{version}/graphql.json", server.graphql_endpoint, methods=["POST"]),
        Route("/staged-uploads", server.staged_upload_post, methods=["POST"]),
        Route("/staged-uploads/{key:path}", server.staged_upload_put, methods=["PUT"]),
        Route("/bulk-results/{name}", server.bulk_result, methods=["GET"]),
        Route("/devstore/health", server.health, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.devstore = server
    return app


def serve_devstore(
    host: str,
    port: int,
    config: DevStoreConfig,
    state: DevStoreState | Iterable[DevStoreState],
    *,
    log_level: str = "info",
) -> None:
    """Run the dev store under uvicorn until interrupted (`clvsync devstore serve`)."""
    app = create_devstore_app(state, config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, ws="none")
