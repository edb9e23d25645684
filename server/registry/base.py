"""What every registry operation shares: loading a row by id or failing with NotFound, deleting
with a Conflict that says what still uses a row, checking ids, and translating the database's
integrity errors inside a savepoint so the caller's transaction stays usable."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import Enum
from typing import Final, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ruche.broker.topics import ID_PATTERN
from ruche.server.errors import Conflict, Invalid, NotFound
from ruche.server.storage.models import (
    Base,
)

M = TypeVar("M", bound=Base)
V = TypeVar("V")


class _Unset(Enum):
    UNSET = "unset"


UNSET: Final = _Unset.UNSET
"""The default of `update_*` arguments: leave this field as it is (None may be a value)."""

SITE_KEY_BYTES = 32
MAX_GRACE_MINUTES = 24 * 60
_SLUG = re.compile(f"^{ID_PATTERN}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
API_KEY_PREFIX = "ruche"


def _now() -> datetime:
    return datetime.now(UTC)


def get(session: Session, model: type[M], key: int) -> M:
    """The `model` row with primary key `key`, or NotFound."""
    found = session.get(model, key)
    if found is None:
        raise NotFound(model.__name__, key)
    return found


def delete(session: Session, model: type[M], key: int) -> None:
    """Delete a row; Conflict when other rows still refer to it (deactivate it instead)."""
    row = get(session, model, key)
    with _savepoint(
        session, f"{model.__name__} {key} is still in use: remove what refers to it first"
    ):
        session.delete(row)


@contextmanager
def _savepoint(session: Session, conflict: str) -> Iterator[None]:
    """Run the block in a savepoint and flush it; an integrity error becomes Conflict.

    The savepoint keeps the caller's transaction usable after the error (PostgreSQL would
    otherwise refuse every later statement in it).
    """
    try:
        with session.begin_nested():
            yield
    except IntegrityError as exc:
        raise Conflict(conflict) from exc


def _update(session: Session, row: Base, conflict: str, changes: Mapping[str, object]) -> None:
    with _savepoint(session, conflict):
        for name, value in changes.items():
            if value is not UNSET:
                setattr(row, name, value)


def check_slug(value: str, what: str) -> str:
    """`value` if it can be a site, agent, desk or door id on the wire, else Invalid."""
    if not _SLUG.match(value):
        raise Invalid(
            f"{what} {value!r} is not a valid id: 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(f"{what} {value.isoformat()} has no timezone: give an aware datetime")
    return value.astimezone(UTC)
