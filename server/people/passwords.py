"""Password hashing with argon2id (argon2-cffi's `PasswordHasher`, its recommended
parameters), and the few rules a new password must follow."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from ruche.server.errors import Invalid

MIN_LENGTH = 10
MAX_LENGTH = 1024
"""Longer inputs are refused rather than hashed: argon2 would take them, but nobody types
a kilobyte, and it bounds the work one request asks for."""

_HASHER = PasswordHasher()
# Verified against when the account is unknown or has no password, so that a wrong
# e-mail costs as long as a wrong password and timing does not tell which accounts exist.
_DUMMY_HASH = _HASHER.hash("ruche: no such account")


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
