"""A member's billable time at a site, from SQL: their door visits and the desk sessions
attributed to them, as the occupancy refresh last stored them, as the pure usage rules'
spans (`ruche.server.billing.usage`). Suspect sessions go to the pure core flagged, so
they are held back, not billed; open ones are held back too."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server.billing.usage import PresenceSpan, Usage, billable_usage
from ruche.server.registry.schedule import local_day
from ruche.server.storage.models import (
    DeskSessionRow,
    SiteRow,
    VisitRow,
)

JOIN_GAP = timedelta(minutes=15)
"""A gap between a member's spans shorter than this is billed as presence (a coffee break)."""


def period_span(site: SiteRow, first: date, last: date) -> tuple[datetime, datetime]:
    """Local dates `first..last` at the site as UTC instants `[start, end)`."""
    return local_day(first, site.tzinfo)[0], local_day(last, site.tzinfo)[1]


def visit_span_id(row: VisitRow) -> str:
    """How invoices name a visit: by its first entry tap (`PresenceSpan.of_visit`)."""
    return f"visit:{row.site}/{row.entry_agent}#{row.entry_seq}"


def desk_span_id(row: DeskSessionRow) -> str:
    """How invoices name a desk session: desk and opening event (`PresenceSpan.of_session`)."""
    return f"desk:{row.site}/{row.agent}/{row.desk}#{row.opened_seq}"


def member_rows(
    session: Session, site: SiteRow, member_id: int, start: datetime, end: datetime
) -> tuple[list[VisitRow], list[DeskSessionRow]]:
    """The member's visits and attributed desk sessions at the site touching `[start, end)`,
    by start: the rows billing reads, and shows as the evidence behind a day."""
    visits = session.scalars(
        select(VisitRow)
        .where(VisitRow.site == site.slug, VisitRow.member_id == member_id)
        .where(VisitRow.start < end)
        .where(sa.or_(VisitRow.end.is_(None), VisitRow.end > start))
        .order_by(VisitRow.start, VisitRow.id)
    )
    desks = session.scalars(
        select(DeskSessionRow)
        .where(DeskSessionRow.site == site.slug, DeskSessionRow.member_id == member_id)
        .where(DeskSessionRow.start < end)
        .where(sa.or_(DeskSessionRow.end.is_(None), DeskSessionRow.end > start))
        .order_by(DeskSessionRow.start, DeskSessionRow.id)
    )
    return list(visits), list(desks)


def member_spans(
    session: Session, site: SiteRow, member_id: int, start: datetime, end: datetime
) -> list[PresenceSpan]:
    """The member's visits and attributed desk sessions at the site touching `[start, end)`.

    Suspect sessions come flagged (held back by the core); open ones with no end.
    """
    visits, desks = member_rows(session, site, member_id, start, end)
    # The ids are the pure core's (`PresenceSpan.of_visit`, `of_session`): stable keys of
    # rows that are recomputed whole.
    spans = [PresenceSpan(visit_span_id(v), v.start, v.end) for v in visits]
    spans.extend(
        PresenceSpan(desk_span_id(d), d.start, d.end, suspect=d.suspect, reason=d.reason)
        for d in desks
    )
    return spans


def member_usage(
    session: Session, site: SiteRow, member_id: int, first_day: date, last_day: date
) -> Usage:
    """The member's billable usage at the site over local days `first_day..last_day`."""
    start, end = period_span(site, first_day, last_day)
    spans = member_spans(session, site, member_id, start - JOIN_GAP, end + JOIN_GAP)
    return billable_usage(
        spans, tz=site.tzinfo, join_gap=JOIN_GAP, first_day=first_day, last_day=last_day
    )
