"""Password hashing with argon2id (argon2-cffi's `PasswordHasher`, its recommended
parameters), and the few rules a new password must follow."""

from __future__ import annotations

import base64

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.low_level import ARGON2_VERSION

from ruche.server.errors import Invalid

MIN_LENGTH = 10
MAX_LENGTH = 1024
"""Longer inputs are refused rather than hashed: argon2 would take them, but nobody types
a kilobyte, and it bounds the work one request asks for."""

_HASHER = PasswordHasher()


def _unmatchable(hasher: PasswordHasher) -> str:
    """An encoded hash with `hasher`'s parameters and an all-zero digest, which no password
    is taken to match. Verifying against it costs what verifying a real hash does, and
    writing it costs nothing, where hashing a password at import took a tenth of a second
    from every process that imports the server."""
    salt, digest = (
        base64.b64encode(bytes(n)).decode().rstrip("=") for n in (hasher.salt_len, hasher.hash_len)
    )
    return (
        f"$argon2{hasher.type.name.lower()}$v={ARGON2_VERSION}"
        f"$m={hasher.memory_cost},t={hasher.time_cost},p={hasher.parallelism}${salt}${digest}"
    )


# Verified against when the account is unknown or has no password, so that a wrong
# e-mail costs as long as a wrong password and timing does not tell which accounts exist.
_DUMMY_HASH = _unmatchable(_HASHER)


def check_new_password(password: str) -> None:
    """Invalid, saying why, unless `password` may be set."""
    if len(password) < MIN_LENGTH:
        raise Invalid(f"the password is too short: at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise Invalid(f"the password is too long: at most {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    check_new_password(password)
    return _HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether `password` matches `stored` (None: no password set, always False, in the
    same time as a real check)."""
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _HASHER.verify(stored or _DUMMY_HASH, password) and stored is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether `stored` was made with older parameters than today's: rehash at sign-in."""
    try:
        return _HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True
