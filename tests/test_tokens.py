"""Access tokens at rest: encrypted, and a key that cannot read them says how to recover."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from plugin.store.tokens import TokenCipher, TokenDecryptionError


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
