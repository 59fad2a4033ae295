"""Settings, built once from the environment (and an optional .env) and passed down."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values

T = TypeVar("T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEVELOPMENT = "development"
PRODUCTION = "production"

# Values that a template or a tutorial leaves behind; refused as secrets outside development:
# empty, only x's or stars, a <name> or {name} to fill in, "your-...", "change me", ...
_PLACEHOLDER = re.compile(
    r"(x+|\*+|<.*>|\{.*\}|\$\{.*\}|your([-_ ].*|secret|key|token)?"
    r"|(change|replace)[-_ ]?(me|this|it)?|secret|placeholder|todo|tbd)?",
    re.IGNORECASE,
)

# Fixed, public values for development mode only: never accepted in production.
DEV_API_KEY = "clvsync-dev-api-key"
DEV_API_SECRET = "clvsync-dev-api-secret"
DEV_TOKEN_KEY = "Y2x2c3luYy1kZXZlbG9wbWVudC1vbmx5LWtleS0zMmI="  # Fernet key: 32 bytes, base64
_DEV_VALUES = frozenset({DEV_API_KEY, DEV_API_SECRET, DEV_TOKEN_KEY})


def _refused_as_secret(value: str) -> str | None:
    """Why `value` cannot be a secret outside development (None if it can)."""
    if not value:
        return "missing"
    if _PLACEHOLDER.fullmatch(value):
        return "a placeholder"
    if value in _DEV_VALUES:
        return "clvsync's public development value"
    return None


class SettingsError(ValueError):
    """The environment does not make a valid configuration; the message names the variable."""


# An order webhook repeats each line item in its refunds and fulfillments, about 2 KB each
# time: a wholesale order of 500 lines, fulfilled and refunded, passes 2 MiB. A body past the
# limit gets 413, is retried by Shopify and then lost until the daily backfill reads the order.
WEBHOOK_MAX_BYTES = 10 * 1024 * 1024

# What `clvsync serve` lets any client make it hold before a request is verified. Each open
# connection can hold a body of up to webhook_max_bytes for up to webhook_read_seconds (10.1 MB
# of memory each, measured), so 100 bound that to about 1 GiB. uvicorn holds the requests in
# progress to the same limit, counting a finished one until its event loop next turns: 32
# clients sending back to back, enough for the app's full rate on 2 cores, counted up to 63. A
# request past the limit gets 503, which Shopify retries.
MAX_CONNECTIONS = 100
# A Shopify webhook's head (request line and headers) is about 1 KiB; 16 KiB is h11's default.
MAX_HEADER_BYTES = 16 * 1024
MIN_HEADER_BYTES = 4 * 1024  # well above a webhook's head: refuses a size meant in KiB


@dataclass(frozen=True)
class Settings:
    environment: str
    api_key: str
    api_secret: str = field(repr=False)
    api_secret_previous: str | None = field(repr=False)
    database_url: str = field(repr=False)  # may carry a password
    app_url: str
    token_encryption_key: str = field(repr=False)
    # the key tokens were stored with before TOKEN_ENCRYPTION_KEY was replaced: still read, until
    # `clvsync shop rekey` has stored them all again under the new one
    token_encryption_key_previous: str | None = field(default=None, repr=False)
    api_version: str = "2026-10"
    # Where shops' Admin API is reached: None means https://{shop}, as on Shopify. Set to a dev
    # store's URL (SHOPIFY_ADMIN_URL) to point every shop at it instead.
    admin_url: str | None = None
    webhook_max_bytes: int = WEBHOOK_MAX_BYTES
    # A body not received within this is refused (408): Shopify sends it at once, and waits 5 s
    # for the answer; a client trickling bytes would hold a request open for as long as it liked.
    webhook_read_seconds: float = 10.0
    max_connections: int = MAX_CONNECTIONS
    max_header_bytes: int = MAX_HEADER_BYTES
    processor_batch_size: int = 50
    processor_idle_seconds: float = 0.5
    processor_max_attempts: int = 8
    log_level: str = "INFO"

    @property
    def development(self) -> bool:
        return self.environment == DEVELOPMENT

    @property
    def webhook_secrets(self) -> tuple[str, str | None]:
        return self.api_secret, self.api_secret_previous


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = Path(".env")
) -> Settings:
    """Build Settings from `environ` (default: os.environ) over an optional .env file.

    `CLVSYNC_ENV=development` allows missing secrets (fixed development values are used);
    any other environment refuses a missing or placeholder secret, naming the variable.
    """
    values = _environment(environ, env_file)
    environment = values.get("CLVSYNC_ENV", PRODUCTION).strip().lower()
    if environment not in (DEVELOPMENT, PRODUCTION):
        raise SettingsError(
            f"CLVSYNC_ENV must be {DEVELOPMENT!r} or {PRODUCTION!r}, not {environment!r}"
        )
    development = environment == DEVELOPMENT
    problems: list[str] = []  # every one told at once: an operator fixes them in one go

    def checked(read: Callable[[], T], fallback: T) -> T:
        try:
            return read()
        except SettingsError as exc:
            problems.append(str(exc))
            return fallback

    def secret(name: str, dev_default: str) -> str:
        value = values.get(name, "").strip()
        if development:
            return dev_default if _PLACEHOLDER.fullmatch(value) else value
        refused = _refused_as_secret(value)
        if refused is not None:
            raise SettingsError(
                f"{name} is {refused}; set it (or CLVSYNC_ENV=development for local use)"
            )
        return value

    def token_key() -> str:
        key = secret("TOKEN_ENCRYPTION_KEY", DEV_TOKEN_KEY)
        _check_fernet_key(key, "TOKEN_ENCRYPTION_KEY")
        return key

    def previous_token_key() -> str | None:
        # may be the public development key: replacing it is what this is for
        key = values.get("TOKEN_ENCRYPTION_KEY_PREVIOUS", "").strip() or None
        if key is not None:
            _check_fernet_key(key, "TOKEN_ENCRYPTION_KEY_PREVIOUS")
        return key

    api_secret = checked(lambda: secret("SHOPIFY_API_SECRET", DEV_API_SECRET), "")
    previous = values.get("SHOPIFY_API_SECRET_PREVIOUS", "").strip() or None
    refused = None if previous is None else _refused_as_secret(previous)
    if refused is not None and not development:
        problems.append(f"SHOPIFY_API_SECRET_PREVIOUS is {refused}; unset it or set it")
    settings = Settings(
        environment=environment,
        api_key=checked(lambda: secret("SHOPIFY_API_KEY", DEV_API_KEY), ""),
        api_secret=api_secret,
        api_secret_previous=previous,
        database_url=values.get("DATABASE_URL", "").strip() or "sqlite:///./clvsync.db",
        app_url=(values.get("APP_URL", "").strip() or "http://127.0.0.1:8000").rstrip("/"),
        token_encryption_key=checked(token_key, ""),
        token_encryption_key_previous=checked(previous_token_key, None),
        admin_url=checked(lambda: _admin_url(values.get("SHOPIFY_ADMIN_URL", "")), None),
        webhook_max_bytes=checked(
            lambda: _positive_int(values, "CLVSYNC_WEBHOOK_MAX_BYTES", WEBHOOK_MAX_BYTES),
            WEBHOOK_MAX_BYTES,
        ),
        max_connections=checked(
            lambda: _positive_int(values, "CLVSYNC_MAX_CONNECTIONS", MAX_CONNECTIONS),
            MAX_CONNECTIONS,
        ),
        max_header_bytes=checked(
            lambda: _positive_int(
                values, "CLVSYNC_MAX_HEADER_BYTES", MAX_HEADER_BYTES, minimum=MIN_HEADER_BYTES
            ),
            MAX_HEADER_BYTES,
        ),
        log_level=checked(lambda: _log_level(values), "INFO"),
    )
    if len(problems) == 1:
        raise SettingsError(problems[0])
    if problems:
        raise SettingsError(f"{len(problems)} settings are wrong: " + "; ".join(problems))
    return settings


def load_log_level(
    environ: Mapping[str, str] | None = None,
    env_file: Path | None = Path(".env"),
    default: str = "INFO",
) -> str:
    """CLVSYNC_LOG_LEVEL alone (`default` if unset), checked as `load_settings` checks it:
    every command logs at it, including those that need no other setting."""
    return _log_level(_environment(environ, env_file), default)


def _environment(environ: Mapping[str, str] | None, env_file: Path | None) -> dict[str, str]:
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    return values


def _log_level(values: Mapping[str, str], default: str = "INFO") -> str:
    raw = values.get("CLVSYNC_LOG_LEVEL", "")
    level = raw.strip().upper() or default
    if level not in LOG_LEVELS:
        raise SettingsError(
            f"CLVSYNC_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, not {raw!r}"
        )
    return level


def _admin_url(raw: str) -> str | None:
    """Where every shop's Admin API calls go instead of Shopify: a dev store. Each call carries
    the shop's access token, so plain http is taken only to this machine (loopback)."""
    url = raw.strip().rstrip("/")
    if not url:
        return None
    if "@" in url:  # not echoed: a password in it would reach the terminal and the logs
        raise SettingsError(
            "SHOPIFY_ADMIN_URL must not hold a user name or password (user@host): httpx "
            "would log it with every request; give the URL without them"
        )
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise SettingsError(f"SHOPIFY_ADMIN_URL must be an http(s) URL, not {raw!r}")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SettingsError(
            f"SHOPIFY_ADMIN_URL {url!r} would send the shops' access tokens in clear: use "
            "https, or http to this machine only (127.0.0.1, localhost)"
        )
    return url


def _positive_int(values: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = values.get(name, "").strip()
    if not raw:
        return default
    wanted = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
    try:
        number = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {wanted}, not {raw!r}") from None
    if number < minimum:
        raise SettingsError(f"{name} must be {wanted}, not {raw!r}")
    return number


def _check_fernet_key(key: str, name: str) -> None:
    from cryptography.fernet import Fernet

    try:
        Fernet(key.encode())
    except ValueError:
        if name.endswith("_PREVIOUS"):  # a new key would read nothing: it must be the old one
            how = "the key the tokens were stored with, as it was set in TOKEN_ENCRYPTION_KEY"
        else:
            how = (
                "make one with: python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'"
            )
        raise SettingsError(
            f"{name} must be a Fernet key (32 url-safe base64-encoded bytes); {how}"
        ) from None
