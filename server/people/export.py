"""Everything Ruche holds about a member, as one JSON document: their right of access
(GDPR, article 15).

```python
document = personal_data(session, member_id=7, now=datetime.now(UTC))
Path("my-data.json").write_text(personal_data_json(document))
```

Each section is the member's rows of one table, every column as stored, except what
is a secret or a way in for whoever holds it: the password's hash, and the hashes of
session and link tokens (only when a session was made and how it ended are given).
Badges appear by their token, the only form Ruche keeps (never the card's UID).
Invoices come with the document and the usage stored at issue.

A section lists columns by reading the table, so a column added later is exported too,
unless it is named in `WITHHELD`.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import QueryableAttribute, Session

from ruche.server.errors import NotFound
from ruche.server.storage.models import (
    AuditRow,
    BadgeEnrolmentRow,
    BadgeRow,
    Base,
    BookingRow,
    DayPassRow,
    DeskCheckInRow,
    DeskSessionRow,
    GuestInvitationRow,
    InvoiceLineRow,
    InvoiceRow,
    MemberRow,
    MembershipRow,
    PersonRow,
    PlanRow,
    SignInSessionRow,
    VisitRow,
)

__all__ = ["FORMAT", "WITHHELD", "personal_data", "personal_data_json"]

FORMAT: Final = "ruche-personal-data/1"
"""The document's `format`: what a reader of the file can rely on."""

WITHHELD: Final = {
    PersonRow: frozenset({"password_hash"}),
    SignInSessionRow: frozenset({"hash"}),
}
"""Columns never exported: secrets, or what would let the file's holder act as the member."""

JsonValue = Any
"""A value `json.dumps` writes."""


def _value(value: object) -> JsonValue:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _row(row: Base) -> dict[str, JsonValue]:
    """Every column of `row`, as JSON values, less the ones `WITHHELD`."""
    table = sa.inspect(type(row)).local_table
    hidden = WITHHELD.get(type(row), frozenset())
    return {c.key: _value(getattr(row, c.key)) for c in table.columns if c.key not in hidden}


def _rows(rows: Iterable[Base]) -> list[dict[str, JsonValue]]:
    return [_row(row) for row in rows]


def personal_data(session: Session, member_id: int, *, now: datetime) -> dict[str, JsonValue]:
    """What Ruche holds about member `member_id` (NotFound if there is none), as of `now`."""
    member = session.get(MemberRow, member_id)
    if member is None:
        raise NotFound("Member", member_id)

    def mine(model: type[Base], column: QueryableAttribute[Any], *order: Any) -> list[Any]:  # noqa: ANN401 - ORM columns
        return list(session.scalars(select(model).where(column == member_id).order_by(*order)))

    people = mine(PersonRow, PersonRow.member_id, PersonRow.id)
    person_ids = [p.id for p in people]
    sessions = (
        list(
            session.scalars(
                select(SignInSessionRow)
                .where(SignInSessionRow.person_id.in_(person_ids))
                .order_by(SignInSessionRow.created_at, SignInSessionRow.id)
            )
        )
        if person_ids
        else []
    )
    memberships = mine(MembershipRow, MembershipRow.member_id, MembershipRow.starts_at)
    plans = {p.id: p.name for p in session.scalars(select(PlanRow))}
    invoices = mine(InvoiceRow, InvoiceRow.member_id, InvoiceRow.period, InvoiceRow.number)
    # Rows about them name them by member id; rows of what they did, by their person.
    actors = [AuditRow.actor.like(f"person:{pid}:%") for pid in person_ids]
    acted = (
        list(session.scalars(select(AuditRow).where(sa.or_(*actors)).order_by(AuditRow.id)))
        if actors
        else []
    )
    return {
        "format": FORMAT,
        "generated_at": now.isoformat(),
        "member": _row(member),
        "people": _rows(people),
        "signin_sessions": _rows(sessions),
        "memberships": [{**_row(m), "plan": plans.get(m.plan_id)} for m in memberships],
        "badges": _rows(mine(BadgeRow, BadgeRow.member_id, BadgeRow.id)),
        "badge_enrolments": _rows(
            mine(BadgeEnrolmentRow, BadgeEnrolmentRow.member_id, BadgeEnrolmentRow.id)
        ),
        "bookings": _rows(mine(BookingRow, BookingRow.member_id, BookingRow.starts_at)),
        "day_passes": _rows(mine(DayPassRow, DayPassRow.member_id, DayPassRow.day)),
        "desk_checkins": _rows(
            mine(DeskCheckInRow, DeskCheckInRow.member_id, DeskCheckInRow.checked_in_at)
        ),
        "guest_invitations_made": _rows(
            mine(GuestInvitationRow, GuestInvitationRow.host_member_id, GuestInvitationRow.id)
        ),
        "guest_invitations_received": _rows(
            mine(GuestInvitationRow, GuestInvitationRow.guest_member_id, GuestInvitationRow.id)
        ),
        "visits": _rows(mine(VisitRow, VisitRow.member_id, VisitRow.start)),
        "desk_sessions": _rows(
            mine(DeskSessionRow, DeskSessionRow.member_id, DeskSessionRow.start)
        ),
        "audit_log": _rows(mine(AuditRow, AuditRow.member_id, AuditRow.id)),
        "audit_log_of_their_actions": _rows(acted),
        "invoices": [_invoice(session, row) for row in invoices],
    }


def _invoice(session: Session, row: InvoiceRow) -> dict[str, JsonValue]:
    """An invoice with its lines; its stored document and usage as JSON, not as text."""
    out = _row(row)
    out["document"] = json.loads(row.document)
    out["usage"] = json.loads(row.usage)
    lines = session.scalars(
        select(InvoiceLineRow)
        .where(InvoiceLineRow.invoice_id == row.id)
        .order_by(InvoiceLineRow.position)
    )
    out["lines"] = _rows(lines)
    return out


def personal_data_json(document: Mapping[str, JsonValue]) -> str:
    """The document as indented UTF-8 JSON, keys in a stable order."""
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
