"""Routes for bookings against reality and utilisation: a site's manager's reports.

Ranges are local dates of the site, `from` included and `to` excluded, so consecutive
ranges tile. Everything is computed on request from the SQL rows the occupancy worker
keeps current (desk sessions, visits) and the bookings, with the pure rules of
`ruche.server.occupancy.sessions` and `ruche.server.occupancy.utilisation`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from ruche.server.api.deps import ManagedSite, PagingDep, SessionDep
from ruche.server.api.schemas import (
    BookingsPublic,
    Day,
    DeskSessionsPublic,
    UtilisationBucketPublic,
    UtilisationFiguresPublic,
    UtilisationPublic,
    UtilisationSeriesPublic,
)
from ruche.server.errors import Invalid
from ruche.server.occupancy.queries import (
    opening_of,
    unbooked_sessions,
    unused_bookings,
    utilisation_inputs,
)
from ruche.server.occupancy.utilisation import (
    MAX_DAYS,
    Bucket,
    Figures,
    Level,
    Series,
    check_range,
    utilisation,
)
from ruche.server.registry.schedule import local_day
from ruche.server.storage.models import SiteRow

router = APIRouter()

MAX_LIST_DAYS = 366
"""The longest range the booked-vs-used lists take, in local days."""

FromDay = Annotated[
    Day,
    Query(alias="from", description="The first local date of the site.", examples=["2030-03-11"]),
]
ToDay = Annotated[
    Day,
    Query(
        alias="to",
        description="The local date the range ends at (excluded).",
        examples=["2030-03-12"],
    ),
]


def _now() -> datetime:
    return datetime.now(UTC)


def _span(
    site: SiteRow, first: date, last: date, *, max_days: int = MAX_LIST_DAYS
) -> tuple[datetime, datetime]:
    """`[first, last)` as UTC instants: from the first's local midnight to the last's."""
    if last <= first:
        raise Invalid(
            f"the range is empty: 'from' ({first.isoformat()}) must be before 'to' "
            f"({last.isoformat()}), which is excluded"
        )
    if last - first > timedelta(days=max_days):
        raise Invalid(f"a range is at most {max_days} days here: ask for a shorter one")
    return local_day(first, site.tzinfo)[0], local_day(last, site.tzinfo)[0]


@router.get("/sites/{site_id}/bookings/unused", tags=["occupancy"])
def list_unused_bookings(
    site: ManagedSite, session: SessionDep, paging: PagingDep, first: FromDay, last: ToDay
) -> BookingsPublic:
    """Booked but unused: the site's desk bookings (not cancelled) starting in the range
    whose desk saw no occupied time inside them, in start order. Bookings not started yet
    are not judged."""
    start, end = _span(site, first, last)
    bookings = unused_bookings(session, site, start, end, now=_now())
    return paging.page(BookingsPublic, bookings)


@router.get("/sites/{site_id}/desk-sessions/unbooked", tags=["occupancy"])
def list_unbooked_sessions(
    site: ManagedSite, session: SessionDep, paging: PagingDep, first: FromDay, last: ToDay
) -> DeskSessionsPublic:
    """Used but unbooked: the site's desk sessions starting in the range that no booking
    of their desk overlaps, in start order."""
    start, end = _span(site, first, last)
    sessions = unbooked_sessions(session, site, start, end, now=_now())
    return paging.page(DeskSessionsPublic, sessions)


def _figures(figures: Figures) -> dict[str, object]:
    return {
        "desks": figures.desks,
        "opening_s": figures.opening.total_seconds(),
        "capacity_s": figures.capacity.total_seconds(),
        "occupied_s": figures.occupied.total_seconds(),
        "occupied_share": figures.occupied_share,
        "after_hours_s": figures.after_hours.total_seconds(),
        "suspect_s": figures.suspect.total_seconds(),
        "booked_s": figures.booked.total_seconds(),
        "booked_used_s": figures.booked_used.total_seconds(),
        "used_unbooked_s": figures.used_unbooked.total_seconds(),
        "peak_desks": figures.peak_desks,
        "peak_people": figures.peak_people,
        "bookings": figures.bookings,
        "no_shows": figures.no_shows,
        "no_show_rate": figures.no_show_rate,
    }


@router.get("/sites/{site_id}/utilisation", tags=["occupancy"])
def read_utilisation(
    *,
    site: ManagedSite,
    session: SessionDep,
    first: FromDay,
    last: ToDay,
    bucket: Annotated[Bucket, Query(description="How the range is cut, in local time.")] = (
        Bucket.DAY
    ),
    by: Annotated[Level, Query(description="One series per desk, per zone, or the site.")] = (
        Level.SITE
    ),
) -> UtilisationPublic:
    """Occupied, booked and used time against the site's opening hours, per bucket.

    At most 31 days with hour buckets, 366 with day buckets, 371 with week buckets.
    """
    check_range(first, last, bucket)
    now = _now()
    start, end = _span(site, first, last, max_days=MAX_DAYS[bucket])
    opening = opening_of(site)
    inputs = utilisation_inputs(session, site, start, end)
    series = utilisation(
        site=site.slug,
        desks=inputs.desks,
        sessions=inputs.sessions,
        bookings=inputs.bookings,
        visits=inputs.visits,
        opening=opening,
        first=first,
        last=last,
        bucket=bucket,
        by=by,
        now=now,
    )

    def row_id(one: Series) -> int:
        if one.level is Level.DESK:
            return inputs.desk_ids[one.key]
        if one.level is Level.ZONE:
            return inputs.zone_ids[one.key]
        return site.id

    return UtilisationPublic(
        site_id=site.id,
        timezone=site.timezone,
        from_day=first,
        to_day=last,
        bucket=bucket,
        by=by,
        opening_hours=site.opening_hours or {"kind": "business_hours"},
        counted_until=min(max(now, start), end),
        series=[
            UtilisationSeriesPublic(
                level=one.level,
                id=row_id(one),
                key=one.key,
                buckets=[
                    UtilisationBucketPublic.model_validate(
                        {"start": b.start, "end": b.end, **_figures(b.figures)}
                    )
                    for b in one.buckets
                ],
                total=UtilisationFiguresPublic.model_validate(_figures(one.total)),
            )
            for one in series
        ],
    )
