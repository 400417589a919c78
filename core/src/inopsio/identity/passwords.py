"""Passwords: argon2id hashes (rehashed on sign-in when the cost changes) and the strength policy."""

from __future__ import annotations

import anyio.to_thread
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

from inopsio.errors import Problem
from inopsio.settings import Settings

MIN_LENGTH = 10
#: argon2 on a megabyte of input is a denial of service; no real passphrase is this long.
MAX_LENGTH = 256
MIN_SCORE = 2  # zxcvbn 0-4: 2 resists online guessing with throttling; common passwords score 0-1


class Passwords:
    def __init__(self, settings: Settings) -> None:
        self.hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
        )
        # Verifying against this keeps unknown accounts as slow as known ones (no user enumeration).
        self._dummy_hash = self.hasher.hash("not a real password, only for timing")

    def check_policy(self, password: str, *, user_inputs: tuple[str, ...] = ()) -> None:
        """Refuse (422) a password that is too short, too long, or easy to guess."""
        if len(password) < MIN_LENGTH:
            raise _weak(f"Use at least {MIN_LENGTH} characters.")
        if len(password) > MAX_LENGTH:
            raise _weak(f"Use at most {MAX_LENGTH} characters.")
        result = zxcvbn(password[:100], user_inputs=[u for u in user_inputs if u])
        if result["score"] < MIN_SCORE:
            hint = result["feedback"].get("warning") or "This password is too easy to guess."
            raise _weak(f"{hint} Try a longer phrase of unrelated words.".strip())

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> tuple[bool, str | None]:
        """Whether ``password`` matches; and a new hash when the stored one uses old parameters."""
        if len(password) > MAX_LENGTH:
            return False, None

        def check() -> tuple[bool, str | None]:
            try:
                self.hasher.verify(password_hash or self._dummy_hash, password)
            except (VerificationError, InvalidHashError):
                return False, None
            if password_hash is None:
                return False, None
            if self.hasher.check_needs_rehash(password_hash):
                return True, self.hasher.hash(password)
            return True, None

        return await anyio.to_thread.run_sync(check)


def _weak(detail: str) -> Problem:
    return Problem(422, "weak-password", detail, errors=[{"pointer": "/password", "detail": detail}])
