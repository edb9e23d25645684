"""The server's exception tree: what the registry and the audit log refuse, and why.

The REST API maps these once (NotFound -> 404, Conflict -> 409, Invalid -> 422);
storage errors (IntegrityError and the like) are translated into them at the point
where they happen, so nothing above the registry sees a SQLAlchemy exception.
"""

from __future__ import annotations


class DomainError(Exception):
    """Something the server refuses; `str(error)` says what was wrong and what to do."""


class NotFound(DomainError):  # noqa: N818 - named for the HTTP answer it becomes
    """The thing named does not exist (or no longer does)."""

    def __init__(self, kind: str, key: object) -> None:
        super().__init__(f"{kind} {key!r} does not exist")
        self.kind = kind
        self.key = key


class Conflict(DomainError):  # noqa: N818 - named for the HTTP answer it becomes
    """The change clashes with what is stored: a duplicate, an overlap, a thing still in use."""


class Invalid(DomainError):  # noqa: N818 - named for the HTTP answer it becomes
    """The input is malformed or breaks a rule no matter what is stored."""
