"""Run tokens: random, shown once, stored as a SHA-256 hash, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "rt_"
MAX_ID = 2**31 - 1  # ids are INTEGER columns


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_run_token(run_id: int) -> tuple[str, str]:
    """Return (token, hash). The run id in the token lets the API answer 403, not 401,
    when a valid token of one run is used on another."""
    token = f"{PREFIX}{run_id}_{secrets.token_urlsafe(32)}"
    return token, hash_token(token)


def token_run_id(token: str) -> int | None:
    if not token.startswith(PREFIX):
        return None
    head = token[len(PREFIX):].split("_", 1)[0]
    if not head.isdigit() or len(head) > 10 or int(head) > MAX_ID:
        return None  # not an id the database can hold: treat as an unknown token
    return int(head)


def matches(token: str, token_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), token_hash)


def same_secret(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())
