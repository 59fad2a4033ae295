"""Webhook signature verification, on the raw body bytes, with Shopify's own verifier."""

from __future__ import annotations

from collections.abc import Mapping

from shopify_app.verify.webhook import verify_webhook_req


def verify_webhook(
    body: bytes, headers: Mapping[str, str], secret: str, previous_secret: str | None = None
) -> bool:
    """True when X-Shopify-Hmac-Sha256 is base64(HMAC-SHA256(secret, body)) for either secret.

    The comparison is Shopify's (`shopify_app.verify_webhook_req`, constant time). That
    verifier takes the body as text, so a body that is not UTF-8 cannot carry a valid Shopify
    signature and is refused here; so is a signature header that is not ASCII (which
    `hmac.compare_digest` would reject with TypeError).
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    signature = next((v for k, v in headers.items() if k.lower() == "x-shopify-hmac-sha256"), "")
    if not signature or not signature.isascii():
        return False
    result = verify_webhook_req(
        {
            "method": "POST",
            "headers": {"x-shopify-hmac-sha256": signature},
            "body": text,
            "url": "",
        },
        {"client_id": "clvsync", "client_secret": secret, "old_client_secret": previous_secret},
    )
    return bool(result.ok)
