"""Routes for bookings and day passes: what opens a site's doors besides a plan's schedule."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from ruche.server import registry
from ruche.server.api.deps import (
    BookingInScope,
    ChangesDep,
    CurrentKey,
    DayPassInScope,
    PagingDep,
    SessionDep,
)
from ruche.server.api.policy import Scope, authorize, narrow
from ruche.server.api.schemas import (
    MAX_ID,
    BookingCreate,
    BookingPublic,
    BookingsPublic,
    DayPassCreate,
    DayPassesPublic,
    DayPassPublic,
    Instant,
)
from ruche.server.errors import Invalid
from ruche.server.storage.enums import BookingStatus
from ruche.server.storage.models import DayPassRow, SiteRow

router = APIRouter()
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


# --- bookings ----------------------------------------------------------------------------


@router.get("/bookings", tags=["bookings"])
def list_bookings(
    *,
    key: CurrentKey,
    session: SessionDep,
    paging: PagingDep,
    site_id: OptionalId = None,
    member_id: OptionalId = None,
    desk_id: OptionalId = None,
    booking_status: Annotated[BookingStatus | None, Query(alias="status")] = None,
    since: Annotated[Instant | None, Query(description="Keep those ending after it.")] = None,
    until: Annotated[Instant | None, Query(description="Keep those starting before it.")] = None,
) -> BookingsPublic:
    """Bookings in start order: a manager's site's, a member's own, or any for an admin."""
    site_id, member_id = narrow(key, site_id=site_id, member_id=member_id)
    bookings = registry.list_bookings(
        session,
        site_id=site_id,
        member_id=member_id,
        desk_id=desk_id,
        status=booking_status,
        since=since,
        until=until,
    )
    return paging.page(BookingsPublic, bookings)


@router.post("/bookings", tags=["bookings"], status_code=status.HTTP_201_CREATED)
def create_booking(
    body: BookingCreate, key: CurrentKey, session: SessionDep, changes: ChangesDep
) -> BookingPublic:
    """Book a desk, or a whole zone (a room), over [starts_at, ends_at).

    409 when an active booking of the same desk or zone overlaps that time (touching is
    fine; grace minutes do not count).
    """
    member_id = body.member_id if body.member_id is not None else key.member_id
    if member_id is None:
        raise Invalid("say whose booking this is: give member_id")
    authorize(key, Scope.site(body.site_id, member_id=member_id))
    booking = registry.book(session, **body.model_dump(exclude={"member_id"}), member_id=member_id)
    changes.site_changed(registry.get(session, SiteRow, booking.site_id).slug)
    changes.commit()
    return BookingPublic.model_validate(booking)


@router.get("/bookings/{booking_id}", tags=["bookings"])
def read_booking(booking: BookingInScope) -> BookingPublic:
    return BookingPublic.model_validate(booking)


@router.post("/bookings/{booking_id}/cancel", tags=["bookings"])
def cancel_booking(
    booking: BookingInScope, session: SessionDep, changes: ChangesDep
) -> BookingPublic:
    """Cancel a booking that is still `booked` (409 otherwise)."""
    registry.cancel_booking(session, booking.id)
    changes.site_changed(registry.get(session, SiteRow, booking.site_id).slug)
    changes.commit()
    return BookingPublic.model_validate(booking)


# --- day passes --------------------------------------------------------------------------


@router.get("/day-passes", tags=["bookings"])
def list_day_passes(
    key: CurrentKey,
    session: SessionDep,
    paging: PagingDep,
    site_id: OptionalId = None,
    member_id: OptionalId = None,
) -> DayPassesPublic:
    """Day passes by date: a manager's site's, a member's own, or any for an admin."""
    site_id, member_id = narrow(key, site_id=site_id, member_id=member_id)
    passes = registry.list_day_passes(session, member_id=member_id, site_id=site_id)
    return paging.page(DayPassesPublic, passes)


@router.post("/day-passes", tags=["bookings"], status_code=status.HTTP_201_CREATED)
def create_day_pass(
    body: DayPassCreate, key: CurrentKey, session: SessionDep, changes: ChangesDep
) -> DayPassPublic:
    """Give a member a site for one local day, whatever their plan says (admin or manager)."""
    authorize(key, Scope.site(body.site_id))
    day_pass = registry.add_day_pass(
        session, member_id=body.member_id, site_id=body.site_id, day=body.day
    )
    changes.site_changed(registry.get(session, SiteRow, body.site_id).slug)
    changes.commit()
    return DayPassPublic.model_validate(day_pass)


@router.get("/day-passes/{day_pass_id}", tags=["bookings"])
def read_day_pass(day_pass: DayPassInScope) -> DayPassPublic:
    return DayPassPublic.model_validate(day_pass)


@router.delete(
    "/day-passes/{day_pass_id}", tags=["bookings"], status_code=status.HTTP_204_NO_CONTENT
)
def delete_day_pass(day_pass: DayPassInScope, session: SessionDep, changes: ChangesDep) -> None:
    site = registry.get(session, SiteRow, day_pass.site_id)
    registry.delete(session, DayPassRow, day_pass.id)
    changes.site_changed(site.slug)
    changes.commit()
