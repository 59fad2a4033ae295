"""Access tokens encrypted at rest (Fernet: AES-128-CBC with HMAC-SHA256).

A key is replaced without losing the tokens: with the old one as TOKEN_ENCRYPTION_KEY_PREVIOUS,
tokens stored under either are read, new ones are stored under the new key, and `rekey`
(`clvsync shop rekey`) stores every one again under it, after which the old key can go.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from plugin.settings import Settings


class TokenDecryptionError(RuntimeError):
    """A stored token cannot be decrypted with the configured TOKEN_ENCRYPTION_KEY."""


class TokenCipher:
    def __init__(self, key: str, previous: str | None = None) -> None:
        keys = [key] if previous is None else [key, previous]
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def __repr__(self) -> str:
        return "TokenCipher(<key hidden>)"

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, stored: str) -> str:
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise _undecryptable() from None

    def rekey(self, stored: str) -> str:
        """`stored` encrypted again under the current key (read with either)."""
        try:
            return self._fernet.rotate(stored.encode()).decode()
        except InvalidToken:
            raise _undecryptable() from None


def settings_cipher(settings: Settings) -> TokenCipher:
    """The cipher of the configured key, and of the previous one if set."""
    return TokenCipher(settings.token_encryption_key, settings.token_encryption_key_previous)


def _undecryptable() -> TokenDecryptionError:
    return TokenDecryptionError(
        "a stored access token does not decrypt with TOKEN_ENCRYPTION_KEY (was the key "
        "changed?): set the key it was stored with as TOKEN_ENCRYPTION_KEY_PREVIOUS, or store the "
        "shop's token again with `clvsync shop add DOMAIN --token TOKEN`"
    )
