"""Access tokens verified once per process: a remembered token still expires and still needs its key."""

from __future__ import annotations

import time
import uuid

import pytest

from inopsio.crypto import KeyRing
from inopsio.errors import Problem
from inopsio.identity.tokens import TokenIssuer
from inopsio.settings import Settings


def issuer(lifetime: int = 60) -> TokenIssuer:
    keys = ["k1:" + "first-secret-" * 3, "k0:" + "old-secret-" * 4]
    return TokenIssuer(KeyRing(Settings(jwt_keys=keys), "master"), lifetime)


def make_token(tokens: TokenIssuer) -> str:
    token, _ = tokens.issue(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), "member")
    return token


def test_the_same_token_gives_the_same_claims_and_a_forged_one_is_still_refused() -> None:
    tokens = issuer()
    token = make_token(tokens)
    first, second = tokens.verify(token), tokens.verify(token)
    assert first == second
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    with pytest.raises(Problem):
        tokens.verify(forged)


def test_a_remembered_token_expires() -> None:
    tokens = issuer(lifetime=1)
    token = make_token(tokens)
    tokens.verify(token)
    time.sleep(1.1)
    with pytest.raises(Problem, match="expired"):
        tokens.verify(token)


def test_a_remembered_token_stops_when_its_key_leaves_the_ring() -> None:
    tokens = issuer()
    token = make_token(tokens)
    tokens.verify(token)
    del tokens.keys.keys["k1"]
    with pytest.raises(Problem, match="not signed by this installation"):
        tokens.verify(token)
