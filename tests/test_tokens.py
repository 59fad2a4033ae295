"""Access tokens at rest: encrypted, and a key that cannot read them says how to recover."""

from __future__ import annotations

import threading
import time

import pytest
from click.testing import CliRunner, Result
from cryptography.fernet import Fernet
from sqlalchemy import Engine
from sqlmodel import Session

from plugin.cli import main
from plugin.settings import DEV_TOKEN_KEY, SettingsError
from plugin.store import shops
from plugin.store.tokens import TokenCipher, TokenDecryptionError
from tests.helpers import T0, add_shop, make_settings
from tests.test_compliance import cli_env


def test_token_round_trips_and_is_not_stored_in_clear() -> None:
    cipher = TokenCipher(Fernet.generate_key().decode())
    stored = cipher.encrypt("shpat_secret")
    assert "shpat_secret" not in stored
    assert cipher.decrypt(stored) == "shpat_secret"


def test_token_under_another_key_names_the_way_to_recover() -> None:
    # given a token stored under one key, read with another (the key was replaced)
    stored = TokenCipher(Fernet.generate_key().decode()).encrypt("shpat_secret")
    # when it is read, then the error says what to do, and never shows the token
    with pytest.raises(TokenDecryptionError) as raised:
        TokenCipher(Fernet.generate_key().decode()).decrypt(stored)
    message = str(raised.value)
    assert "clvsync shop add DOMAIN --token TOKEN" in message
    assert "TOKEN_ENCRYPTION_KEY" in message and stored not in message


def test_token_stored_under_the_previous_key_is_read_and_new_ones_use_the_new_key() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = TokenCipher(old).encrypt("shpat_old")
    both = TokenCipher(new, previous=old)
    assert both.decrypt(stored) == "shpat_old"
    assert TokenCipher(new).decrypt(both.encrypt("shpat_new")) == "shpat_new"
    assert TokenCipher(new).decrypt(both.rekey(stored)) == "shpat_old"


def test_settings_previous_token_key_may_be_the_development_one_but_must_be_a_key() -> None:
    settings = make_settings(TOKEN_ENCRYPTION_KEY_PREVIOUS=DEV_TOKEN_KEY)
    assert settings.token_encryption_key_previous == DEV_TOKEN_KEY
    assert DEV_TOKEN_KEY not in repr(settings)
    with pytest.raises(
        SettingsError, match="TOKEN_ENCRYPTION_KEY_PREVIOUS must be a Fernet key"
    ) as e:
        make_settings(TOKEN_ENCRYPTION_KEY_PREVIOUS="not-a-key")
    # the old key, not a new one, which would read nothing
    assert "the key the tokens were stored with" in str(e.value)
    assert "generate_key" not in str(e.value)


def test_shop_rekey_moves_every_token_to_the_new_key(engine: Engine, migrated_url: str) -> None:
    # given two shops whose tokens are stored under the key about to be replaced, and one whose
    # token no key here reads
    add_shop(engine, "a.myshopify.com", "shpat_a")
    add_shop(engine, "b.myshopify.com", "shpat_b")
    with Session(engine, expire_on_commit=False) as session, session.begin():
        lost = shops.add_shop(
            session,
            "c.myshopify.com",
            "shpat_c",
            TokenCipher(Fernet.generate_key().decode()),
            T0,
        )
    old = make_settings().token_encryption_key
    new = Fernet.generate_key().decode()
    env = cli_env(migrated_url) | {
        "TOKEN_ENCRYPTION_KEY": new,
        "TOKEN_ENCRYPTION_KEY_PREVIOUS": old,
    }
    # when the tokens are rekeyed with the new key and the old one as previous
    result = CliRunner().invoke(main, ["shop", "rekey"], env=env)
    # then the two readable ones are stored under the new key alone; the third is named
    assert result.exit_code == 1
    assert "2 access tokens stored under TOKEN_ENCRYPTION_KEY" in result.stdout
    assert "c.myshopify.com" in result.stderr and "shop add" in result.stderr
    with Session(engine) as session:
        held = {s.domain: s.access_token_encrypted for s in shops.list_shops(session)}
    cipher = TokenCipher(new)
    assert cipher.decrypt(held["a.myshopify.com"] or "") == "shpat_a"
    assert cipher.decrypt(held["b.myshopify.com"] or "") == "shpat_b"
    assert held["c.myshopify.com"] == lost.access_token_encrypted


def test_shop_rekey_never_puts_back_a_token_stored_meanwhile(
    engine: Engine, migrated_url: str
) -> None:
    # given a shop whose token is being replaced (`shop add` with a new one, under the new key)
    # in a transaction not yet committed when the rekey starts
    add_shop(engine, "a.myshopify.com", "shpat_old")
    new = Fernet.generate_key().decode()
    env = cli_env(migrated_url) | {
        "TOKEN_ENCRYPTION_KEY": new,
        "TOKEN_ENCRYPTION_KEY_PREVIOUS": make_settings().token_encryption_key,
    }
    results: list[Result] = []
    with Session(engine) as replacing, replacing.begin():
        shops.add_shop(replacing, "a.myshopify.com", "shpat_new", TokenCipher(new), T0)
        rekey = threading.Thread(
            target=lambda: results.append(CliRunner().invoke(main, ["shop", "rekey"], env=env))
        )
        rekey.start()
        time.sleep(1.0)  # the rekey reaches the shop's row (PostgreSQL) or the write lock
    # when the replacement commits, and the rekey ends after it
    rekey.join(timeout=30)
    # then the token held is the new one, under the new key: the rekey waited for the row and
    # read it as committed, instead of writing back the old token it had read before
    assert [r.exit_code for r in results] == [0]
    with Session(engine) as session:
        [held] = [s.access_token_encrypted for s in shops.list_shops(session)]
    assert TokenCipher(new).decrypt(held or "") == "shpat_new"


def test_shop_rekey_without_the_previous_key_says_to_set_it(
    engine: Engine, migrated_url: str
) -> None:
    # given a token stored under a key that has since been replaced, and no previous key set
    add_shop(engine, "a.myshopify.com", "shpat_a")
    env = cli_env(migrated_url) | {"TOKEN_ENCRYPTION_KEY": Fernet.generate_key().decode()}
    # when the tokens are rekeyed, then the message names the key tried and the ways out
    result = CliRunner().invoke(main, ["shop", "rekey"], env=env)
    assert result.exit_code == 1
    assert (
        "tokens that do not decrypt with TOKEN_ENCRYPTION_KEY, left as they were" in result.stderr
    )
    assert "set TOKEN_ENCRYPTION_KEY_PREVIOUS to the key they were stored with" in result.stderr
    assert "shpat_a" not in result.output
