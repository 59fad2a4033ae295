"""Access tokens encrypted at rest (Fernet: AES-128-CBC with HMAC-SHA256)."""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken


class TokenDecryptionError(RuntimeError):
    """A stored token cannot be decrypted with the configured TOKEN_ENCRYPTION_KEY."""


class TokenCipher:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    def __repr__(self) -> str:
        return "TokenCipher(<key hidden>)"

    def encrypt(self, token: str) -> str:
        return self._fernet.encrypt(token.encode()).decode()

    def decrypt(self, stored: str) -> str:
        try:
            return self._fernet.decrypt(stored.encode()).decode()
        except InvalidToken:
            raise TokenDecryptionError(
                "a stored access token does not decrypt with TOKEN_ENCRYPTION_KEY (was the key "
                "changed?): set the key it was stored with, or store the shop's token again "
                "with `clvsync shop add DOMAIN --token TOKEN`"
            ) from None
