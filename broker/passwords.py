"""Mosquitto's `$7$` password hash (PBKDF2-SHA512), computed here so no `mosquitto_passwd`
run is needed; the dynamic security plugin stores the same three parts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import lru_cache

PBKDF2_ITERATIONS = 20_000
"""Mosquitto 2.0 defaults to 101 iterations; more makes a stolen accounts file costly to
crack, at about 10 ms of broker CPU per connection, which agents pay once per connect."""

_SALT_BYTES = 12


def hash_password(
    password: str, *, iterations: int = PBKDF2_ITERATIONS, salt: bytes | None = None
) -> str:
    """A Mosquitto 2.x `$7$` entry: PBKDF2-HMAC-SHA512, base64 salt and hash."""
    salt = secrets.token_bytes(_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


@lru_cache(maxsize=4096)
def hash_password_cached(password: str) -> str:
    """`hash_password`, hashed once per password per process.

    Regenerating the accounts file for every registry change would otherwise
    re-run PBKDF2 for every account; the clear password is in memory already.
    """
    return hash_password(password)


def verify_password(password: str, entry: str) -> bool:
    """Check a password against a `$7$` entry, as Mosquitto does."""
    try:
        _, kind, iterations, salt_b64, hash_b64 = entry.split("$")
        salt, expected = base64.b64decode(salt_b64), base64.b64decode(hash_b64)
        rounds = int(iterations)
    except ValueError:
        return False
    if kind != "7":
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, rounds)
    return hmac.compare_digest(digest, expected)


def generate_password() -> str:
    """A random password for a new account: 32 URL-safe characters."""
    return secrets.token_urlsafe(24)
