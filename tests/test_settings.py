"""Settings from the environment: secrets that cannot be real are refused outside development."""

from __future__ import annotations

import pytest

from plugin.settings import (
    DEV_API_KEY,
    DEV_API_SECRET,
    DEV_TOKEN_KEY,
    SettingsError,
    load_settings,
)
from tests.helpers import make_settings

REAL = make_settings()
PRODUCTION = {
    "CLVSYNC_ENV": "production",
    "SHOPIFY_API_KEY": REAL.api_key,
    "SHOPIFY_API_SECRET": REAL.api_secret,
    "TOKEN_ENCRYPTION_KEY": REAL.token_encryption_key,
}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SHOPIFY_API_KEY", DEV_API_KEY),
        ("SHOPIFY_API_SECRET", DEV_API_SECRET),
        ("SHOPIFY_API_SECRET_PREVIOUS", DEV_API_SECRET),
        ("TOKEN_ENCRYPTION_KEY", DEV_TOKEN_KEY),
    ],
)
def test_production_refuses_the_public_development_values(name: str, value: str) -> None:
    with pytest.raises(SettingsError, match=f"{name} is clvsync's public development value"):
        load_settings({**PRODUCTION, name: value}, env_file=None)


@pytest.mark.parametrize(
    "value",
    [
        "your-api-secret",
        "your_secret",
        "YOUR-SECRET-HERE",
        "replace-me",
        "changeme",
        "xxxxxxxx",
        "********",
        "<secret>",
        "{{SHOPIFY_API_SECRET}}",
        "${SHOPIFY_API_SECRET}",
        "TODO",
    ],
)
def test_production_refuses_a_placeholder_naming_the_variable(value: str) -> None:
    with pytest.raises(SettingsError, match="SHOPIFY_API_SECRET is a placeholder"):
        load_settings({**PRODUCTION, "SHOPIFY_API_SECRET": value}, env_file=None)


def test_production_takes_real_looking_secrets_and_development_fills_in_placeholders() -> None:
    secret = "6f1c2e9a0b7d4c3e8f5a1b2c3d4e5f60"
    settings = load_settings({**PRODUCTION, "SHOPIFY_API_SECRET": secret}, env_file=None)
    assert settings.api_secret == secret
    dev = load_settings({"CLVSYNC_ENV": "development", "SHOPIFY_API_SECRET": "<secret>"}, None)
    assert dev.api_secret == DEV_API_SECRET
    own = load_settings({"CLVSYNC_ENV": "development", "SHOPIFY_API_SECRET": secret}, None)
    assert own.api_secret == secret


@pytest.mark.parametrize(
    ("url", "taken"),
    [
        ("http://127.0.0.1:8100/", "http://127.0.0.1:8100"),
        ("http://localhost:8100", "http://localhost:8100"),
        ("https://devstore.example.com", "https://devstore.example.com"),
    ],
)
def test_the_admin_url_takes_https_or_http_to_this_machine(url: str, taken: str) -> None:
    settings = load_settings({**PRODUCTION, "SHOPIFY_ADMIN_URL": url}, env_file=None)
    assert settings.admin_url == taken


@pytest.mark.parametrize("url", ["http://10.0.0.5:8100", "http://devstore.example.com"])
def test_the_admin_url_refuses_plain_http_to_another_machine(url: str) -> None:
    # every Admin API call carries a shop's access token
    with pytest.raises(SettingsError, match="access tokens in clear"):
        load_settings({**PRODUCTION, "SHOPIFY_ADMIN_URL": url}, env_file=None)


@pytest.mark.parametrize(
    "url",
    ["https://ops:s3cret-pw@devstore.example.com", "ftp://ops:s3cret-pw@host", "a:s3cret-pw@b"],
)
def test_the_admin_url_refuses_a_user_or_password_without_echoing_it(url: str) -> None:
    with pytest.raises(SettingsError, match="must not hold a user name or password") as raised:
        load_settings({**PRODUCTION, "SHOPIFY_ADMIN_URL": url}, env_file=None)
    assert "s3cret-pw" not in str(raised.value)


def test_serve_limits_default_to_100_connections_and_16_kib_heads() -> None:
    settings = load_settings(PRODUCTION, env_file=None)
    assert (settings.max_connections, settings.max_header_bytes) == (100, 16384)


def test_serve_limits_are_taken_from_the_environment() -> None:
    env = {**PRODUCTION, "CLVSYNC_MAX_CONNECTIONS": " 250 ", "CLVSYNC_MAX_HEADER_BYTES": "4096"}
    settings = load_settings(env, env_file=None)
    assert (settings.max_connections, settings.max_header_bytes) == (250, 4096)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CLVSYNC_MAX_CONNECTIONS", "0", "must be a positive integer, not '0'"),
        ("CLVSYNC_MAX_CONNECTIONS", "lots", "must be a positive integer, not 'lots'"),
        # a size in KiB where bytes are meant would refuse every webhook
        ("CLVSYNC_MAX_HEADER_BYTES", "16", "must be an integer of at least 4096, not '16'"),
        ("CLVSYNC_MAX_HEADER_BYTES", "16k", "must be an integer of at least 4096, not '16k'"),
    ],
)
def test_serve_limits_refuse_a_value_that_cannot_serve_naming_the_variable(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError, match=f"^{name} {message}$"):
        load_settings({**PRODUCTION, name: value}, env_file=None)


def test_every_wrong_setting_is_named_at_once() -> None:
    # given a production environment missing two secrets, with a bad key and a bad limit
    env = {
        "CLVSYNC_ENV": "production",
        "SHOPIFY_API_KEY": REAL.api_key,
        "TOKEN_ENCRYPTION_KEY": "not-a-key",
        "CLVSYNC_MAX_CONNECTIONS": "0",
    }
    # when the settings are loaded, then one error names each of them (before, only the first,
    # and an operator fixed them one run at a time)
    with pytest.raises(SettingsError, match=r"^3 settings are wrong: ") as raised:
        load_settings(env, env_file=None)
    message = str(raised.value)
    assert "SHOPIFY_API_SECRET is " in message
    assert "TOKEN_ENCRYPTION_KEY must be a Fernet key" in message
    assert "CLVSYNC_MAX_CONNECTIONS must be a positive integer, not '0'" in message
