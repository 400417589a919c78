"""The installation's secrets: the master key, the token signing key ring, encryption of stored secrets
(TOTP seeds, OIDC client secrets, payment keys) and digests of bearer secrets."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from inopsio.settings import Settings


def master_secret(settings: Settings) -> str:
    """``secret_key`` if set; else a random one kept in ``data_dir/secret.key`` (not in production)."""
    if settings.secret_key:
        return settings.secret_key
    path = Path(settings.data_dir) / "secret.key"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_urlsafe(48)
    # Another process may have written it first: keep whichever landed.
    try:
        with path.open("x") as handle:
            handle.write(value)
        path.chmod(0o600)
    except FileExistsError:
        return path.read_text().strip()
    return value


def derive(master: str, purpose: str) -> bytes:
    """A 32-byte key for one purpose, so no two uses share a key."""
    return hmac.new(master.encode(), f"inopsio:{purpose}".encode(), hashlib.sha256).digest()


def digest(token: str) -> str:
    """SHA-256 of a high-entropy bearer secret (refresh tokens, API keys, one-time links)."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token(prefix: str = "", nbytes: int = 32) -> str:
    return prefix + secrets.token_urlsafe(nbytes)


class SecretBox:
    """Authenticated encryption (Fernet) for secrets the application must read back."""

    def __init__(self, master: str) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(derive(master, "secret-box")))

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError("stored secret cannot be decrypted with this installation's key") from exc


class KeyRing:
    """Token signing keys by ``kid``; the first signs, every one verifies (key rotation)."""

    def __init__(self, settings: Settings, master: str) -> None:
        entries = settings.jwt_keys or [f"k0:{base64.urlsafe_b64encode(derive(master, 'jwt')).decode()}"]
        self.keys: dict[str, bytes] = {}
        for entry in entries:
            kid, _, secret = entry.partition(":")
            self.keys[kid] = secret.encode()
        self.current_kid = next(iter(self.keys))

    @property
    def current(self) -> bytes:
        return self.keys[self.current_kid]
