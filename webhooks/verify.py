"""Webhook signature verification, on the raw body bytes, before anything is parsed.

Shopify signs the body: base64(HMAC-SHA256(client secret, raw body)). The signature is first
checked here on the raw bytes, in constant time, with the current or the previous secret: a
forged request costs one HMAC, and nothing of its body is read. A body whose signature holds is
then checked by Shopify's own verifier (`shopify_app.verify_webhook_req`) as well, and is taken
only if both agree. Shopify's verifier alone would do it the other way round: it parses the
whole body (for a log entry it builds) before it compares the signature, so that a forged body
of a few megabytes costs a second of CPU, and one it cannot parse fails the request.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

from shopify_app.verify.webhook import verify_webhook_req


class UnreadableBodyError(ValueError):
    """The signature holds, but Shopify's verifier cannot read the body (not UTF-8, or JSON it
    cannot parse: nested too deeply, a number of thousands of digits)."""


def verify_webhook(
    body: bytes, headers: Mapping[str, str], secret: str, previous_secret: str | None = None
) -> bool:
    """True when X-Shopify-Hmac-Sha256 is base64(HMAC-SHA256(secret, body)) for either secret,
    as checked on the raw bytes and by Shopify's verifier. Raises UnreadableBodyError for a
    body whose signature holds but that Shopify's verifier cannot read."""
    signature = next((v for k, v in headers.items() if k.lower() == "x-shopify-hmac-sha256"), "")
    if not signature or not signature.isascii():
        return False
    secrets = [s for s in (secret, previous_secret) if s]
    if not any(_signed_with(body, signature.encode(), s) for s in secrets):
        return False
    try:
        text = body.decode("utf-8")
        result = verify_webhook_req(
            {
                "method": "POST",
                "headers": {"x-shopify-hmac-sha256": signature},
                "body": text,
                "url": "",
            },
            {"client_id": "clvsync", "client_secret": secret, "old_client_secret": previous_secret},
        )
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise UnreadableBodyError(_reason(exc)) from None
    return bool(result.ok)


def _signed_with(body: bytes, signature: bytes, secret: str) -> bool:
    expected = base64.b64encode(hmac.digest(secret.encode(), body, hashlib.sha256))
    return hmac.compare_digest(expected, signature)


def _reason(error: BaseException) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "not UTF-8"
    if isinstance(error, RecursionError):
        return "nested too deeply"
    return "not JSON that can be read"
