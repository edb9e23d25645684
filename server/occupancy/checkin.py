"""A member checks in at a desk by scanning its QR code.

The code holds a desk reference, `<desk id>-<tag>`: the tag is an HMAC of the id under
a key of the server's, so a member who has not seen the desk's code cannot check in at
another desk by counting ids (`desk_reference`, `desk_of`; pure). `check_in` records a
`DeskCheckInRow`, linked to the member's booking of that desk now (grace minutes
included), and refuses a desk someone else has booked now.

The live floor shows the member who checked in last at each desk today
(`checked_in_today`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime, time, timedelta
from typing import Final

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ruche.server.errors import Conflict, Invalid
from ruche.server.registry import get
from ruche.server.storage.enums import BookingStatus
from ruche.server.storage.models import (
    BookingRow,
    DeskCheckInRow,
    DeskRow,
    MemberRow,
    SiteRow,
)

_TAG_BYTES: Final = 12
"""96 bits: no one guesses a tag, and the QR code stays small."""
_REFERENCE: Final = re.compile(r"^([1-9][0-9]{0,17})-([A-Za-z0-9_-]{16})$")
_PURPOSE: Final = b"ruche-desk-checkin:"


def _tag(key: bytes, desk_id: int) -> str:
    digest = hmac.new(key, _PURPOSE + str(desk_id).encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest[:_TAG_BYTES]).decode().rstrip("=")


def desk_reference(key: bytes, desk_id: int) -> str:
    """What a desk's QR code carries after `/my/checkin/`.

    >>> key = b"k" * 32
    >>> desk_of(key, desk_reference(key, 7)), desk_of(key, "7-" + "A" * 16)
    (7, None)
    """
    return f"{desk_id}-{_tag(key, desk_id)}"


def desk_of(key: bytes, reference: str) -> int | None:
    """The desk id `reference` was made for under `key`, or None for one made elsewhere,
    mangled or guessed."""
    found = _REFERENCE.match(reference)
    if found is None:
        return None
    desk_id = int(found.group(1))
    return desk_id if hmac.compare_digest(found.group(2), _tag(key, desk_id)) else None


def current_booking(session: Session, *, desk_id: int, now: datetime) -> BookingRow | None:
    """The active booking of the desk at `now`, grace minutes included; the member's own
    first if two touch (one ending, the next starting)."""
    bookings = session.scalars(
        select(BookingRow)
        .where(
            BookingRow.desk_id == desk_id,
            BookingRow.status == BookingStatus.BOOKED,
            BookingRow.starts_at <= now + timedelta(days=1),
            BookingRow.ends_at > now - timedelta(days=1),
        )
        .order_by(BookingRow.starts_at)
    )
    for booking in bookings:
        opens = booking.starts_at - timedelta(minutes=booking.grace_before)
        closes = booking.ends_at + timedelta(minutes=booking.grace_after)
        if opens <= now < closes:
            return booking
    return None


def check_in(session: Session, *, member_id: int, desk_id: int, now: datetime) -> DeskCheckInRow:
    """Record that the member is at the desk now, linked to their booking of it now, if
    any. Conflict if someone else has booked the desk now; Invalid for an inactive member."""
    member = get(session, MemberRow, member_id)
    if not member.active:
        raise Invalid(f"member {member_id} is inactive")
    get(session, DeskRow, desk_id)
    booking = current_booking(session, desk_id=desk_id, now=now)
    if booking is not None and booking.member_id != member_id:
        raise Conflict(f"desk {desk_id} is booked by someone else now (booking {booking.id})")
    row = DeskCheckInRow(desk_id=desk_id, member_id=member_id,
                         booking_id=None if booking is None else booking.id,
                         checked_in_at=now)  # fmt: skip
    session.add(row)
    session.flush()
    return row


def checked_in_today(session: Session, site: SiteRow, *, now: datetime) -> dict[int, str]:
    """For each desk of the site someone checked in at today (the site's day), the name
    of the member who did so last."""
    day = datetime.combine(now.astimezone(site.tzinfo).date(), time(), tzinfo=site.tzinfo)
    latest = (
        select(DeskCheckInRow.desk_id, func.max(DeskCheckInRow.id).label("id"))
        .join(DeskRow, DeskRow.id == DeskCheckInRow.desk_id)
        .where(DeskRow.site_id == site.id, DeskCheckInRow.checked_in_at >= day.astimezone(UTC))
        .group_by(DeskCheckInRow.desk_id)
        .subquery()
    )
    rows = session.execute(
        select(DeskCheckInRow.desk_id, MemberRow.name)
        .join(latest, latest.c.id == DeskCheckInRow.id)
        .join(MemberRow, MemberRow.id == DeskCheckInRow.member_id)
    )
    return {int(desk_id): str(name) for desk_id, name in rows}
