"""Staged uploads and bulk result files, stored in the shop's state and served by this app.

Multipart bodies are parsed with the standard library's email parser, so no extra dependency.
"""

from __future__ import annotations

from collections.abc import Iterable
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import HTTP

from plugin.devstore.state import DevStoreState


class UploadError(ValueError):
    """A staged upload this store did not issue, or a malformed multipart body."""


def parse_multipart(content_type: str, body: bytes) -> dict[str, bytes]:
    """Form fields by name; file parts by their field name too (S3/GCS-style POST policies)."""
    head = f"Content-Type: {content_type}\r\nMIME-Version: 1.0\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise UploadError("expected a multipart/form-data body")
    fields: dict[str, bytes] = {}
    for part in message.iter_parts():
        assert isinstance(part, EmailMessage)
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if isinstance(name, str) and isinstance(payload, bytes):
            fields[name] = payload
    return fields


def store_upload(states: Iterable[DevStoreState], key: str, content: bytes) -> DevStoreState:
    """Keep the uploaded bytes under the key stagedUploadsCreate issued."""
    for state in states:
        if key in state.staged_uploads:
            state.staged_uploads[key] = content
            return state
    raise UploadError(f"no staged upload target was issued for key {key!r}")


def find_result(states: Iterable[DevStoreState], token: str) -> bytes | None:
    for state in states:
        if token in state.bulk_results:
            return state.bulk_results[token]
    return None
