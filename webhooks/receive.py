"""`POST /webhooks`: read the raw body (bounded), verify it, store it, and only then say 200."""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import anyio
import orjson
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import ClientDisconnect, Request
from starlette.responses import PlainTextResponse, Response

from plugin.settings import Settings
from plugin.store import inbox
from plugin.store.shops import ShopDomainError, normalise_domain
from webhooks.handlers import HANDLERS
from webhooks.payloads import PayloadError, minimise, parse_time
from webhooks.verify import UnreadableBodyError, verify_webhook
from webhooks.writer import InboxWriter

log = logging.getLogger(__name__)

REQUIRED_HEADERS = (
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-api-version",
    "x-shopify-webhook-id",
)
# a delivery for a shop the app does not serve: acknowledged (Shopify would retry), not stored
_DROPPED = {
    inbox.Stored.UNKNOWN_SHOP: "unknown shop",
    inbox.Stored.NOT_INSTALLED: "uninstalled shop",
}


class BodyTooLargeError(Exception):
    """The body is larger than the configured limit."""


async def read_body(request: Request, limit: int, seconds: float) -> bytes:
    """The raw body, refusing (without reading on) anything past `limit` bytes; TimeoutError
    if it has not all come within `seconds`."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLargeError
    chunks, size = [], 0
    with anyio.fail_after(seconds):
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLargeError
            chunks.append(chunk)
    return b"".join(chunks)


def _text(status: int, message: str) -> Response:
    return PlainTextResponse(message + "\n", status_code=status)


def _headers(request: Request) -> dict[str, str]:
    """The request's headers as one dict (names in lower case, as ASGI gives them): each look-up
    in Starlette's `Headers` decodes every header again. Of repeated headers, the first counts,
    as with `Headers.get`."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in reversed(request.scope["headers"])}


def parse_body(body: bytes) -> tuple[Any, Callable[[Any], str]]:
    """The body's JSON, and how to write the part of it kept.

    orjson does both in about a quarter of the time the standard library takes. What orjson
    refuses and the standard library reads (a lone surrogate escape, NaN) is read, and written
    back, by the standard library, so that no body Shopify may send is refused for it. Raises
    ValueError for a body that is not JSON.
    """
    try:
        return orjson.loads(body), _orjson_text
    except orjson.JSONDecodeError:
        return json.loads(body), _json_text


def _orjson_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _json_text(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _triggered_at(value: str | None) -> datetime | None:
    """X-Shopify-Triggered-At, if it is there and readable: it is kept, never relied on."""
    try:
        return parse_time(value, "X-Shopify-Triggered-At") if value else None
    except PayloadError:
        return None


def webhook_endpoint(
    settings: Settings, writer: InboxWriter
) -> Callable[[Request], Awaitable[Response]]:
    secret, previous = settings.webhook_secrets

    async def receive(request: Request) -> Response:
        try:
            body = await read_body(
                request, settings.webhook_max_bytes, settings.webhook_read_seconds
            )
        except BodyTooLargeError:
            return _text(413, f"body larger than {settings.webhook_max_bytes} bytes")
        except TimeoutError:
            return _text(408, f"body not received within {settings.webhook_read_seconds:g} s")
        except ClientDisconnect:
            return _text(400, "client disconnected before sending the whole body")
        headers = _headers(request)
        try:
            verified = verify_webhook(body, headers, secret, previous)
        except UnreadableBodyError as exc:
            return _text(400, f"body is {exc}")
        if not verified:
            return _text(401, "HMAC signature missing or invalid")
        missing = [name for name in REQUIRED_HEADERS if not headers.get(name)]
        if missing:
            return _text(400, "missing required headers: " + ", ".join(missing))
        try:
            domain = normalise_domain(headers["x-shopify-shop-domain"])
        except ShopDomainError:
            return _text(400, "X-Shopify-Shop-Domain is not a NAME.myshopify.com domain")
        try:
            payload, encode = parse_body(body)
        except ValueError:
            return _text(400, "body is not JSON")
        if not isinstance(payload, dict):
            return _text(400, "body is not a JSON object")
        topic = headers["x-shopify-topic"].strip().lower()
        if topic not in HANDLERS:
            log.info(
                "webhook for unhandled topic %r from %s acknowledged and dropped", topic, domain
            )
            return _text(200, "topic not handled")
        try:
            kept = encode(minimise(topic, payload))
        except (orjson.JSONEncodeError, RecursionError):
            return _text(400, "body is nested too deeply")
        delivery = inbox.Delivery(
            shop_domain=domain,
            webhook_id=headers["x-shopify-webhook-id"][:255],
            topic=topic,
            event_id=(headers.get("x-shopify-event-id") or "")[:255] or None,
            triggered_at=_triggered_at(headers.get("x-shopify-triggered-at")),
            api_version=headers["x-shopify-api-version"][:32],
            payload=kept,
        )
        try:
            stored = await writer.store(delivery)
        except SQLAlchemyError as exc:
            # Not stored, so not acknowledged: Shopify retries.
            log.error("webhook from %s not stored, answering 503: %s", domain, type(exc).__name__)
            return _text(503, "storage unavailable, retry later")
        if stored in _DROPPED:
            log.warning(
                "webhook %s for %s %s acknowledged and dropped", topic, _DROPPED[stored], domain
            )
        return _text(200, stored.value)

    return receive
