"""The audit log page: a site's rows, newest first, a page at a time, filtered by door,
member, kind and dates, and the hash chain's verification (what `ruche audit verify` runs).

Filters come as text from a GET form and are read here, so that a bad one (a date that is
not one, a member nobody is) is a sentence on the page in the reader's language rather
than an error page. Dates are the site's local days, both included.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server.access import audit
from ruche.server.access.alarms import actor_name
from ruche.server.api.deps import SessionDep
from ruche.server.api.pages.guard import ManagerReader, site_choice
from ruche.server.api.pages.rendering import render
from ruche.server.i18n import N_
from ruche.server.registry.schedule import local_day
from ruche.server.storage.db import READ_ONLY
from ruche.server.storage.enums import AuditKind, Role
from ruche.server.storage.models import DoorRow, MemberRow, SiteRow

router = APIRouter(include_in_schema=False)

PATH: Final = "/manage/audit"
PAGE_SIZE: Final = 50
MAX_DAYS: Final = 366
"""The longest date range a filter takes."""
KINDS: Final = {
    AuditKind.DECISION: N_("Door decision"),
    AuditKind.REMOTE_UNLOCK: N_("Remote unlock"),
    AuditKind.ALARM: N_("Alarm"),
    AuditKind.LOCKDOWN: N_("Lockdown"),
    AuditKind.ALARM_ACK: N_("Alarm acknowledged"),
}
PROBLEMS: Final = {
    "door": N_("There is no such door at this site."),
    "member": N_("No member uses this email address."),
    "kind": N_("Choose a kind of row from the list."),
    "from": N_("The start date is not a date: write it as YYYY-MM-DD."),
    "to": N_("The end date is not a date: write it as YYYY-MM-DD."),
    "range": N_("The start date must not be after the end date."),
    "long": N_("Choose a period of at most a year."),
    "cursor": N_("This page of the log does not exist: start again from the newest rows."),
}
"""What the page says of each filter it cannot use."""
Text = Annotated[str | None, Query(max_length=320)]


@dataclass(frozen=True)
class Filters:
    """The filters as the form sent them (text, shown back in the form) and as read."""

    door: str = ""
    member: str = ""
    kind: str = ""
    first: str = ""
    last: str = ""
    cursor: str = ""

    def query(self, site: SiteRow, **extra: str) -> str:
        """This page's query string with these filters (and `extra`), for links."""
        fields = {"site": site.slug, "door": self.door, "member": self.member,
                  "kind": self.kind, "from": self.first, "to": self.last, **extra}  # fmt: skip
        return urlencode({k: v for k, v in fields.items() if v})


@dataclass(frozen=True)
class Wanted:
    door: str | None = None
    member_id: int | None = None
    kind: AuditKind | None = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: int | None = None


def _day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _member(session: Session, text: str, wrong: list[str]) -> int | None:
    if not text:
        return None
    email = text.strip().lower()
    found = session.scalars(select(MemberRow.id).where(MemberRow.email == email)).first()
    if found is None:
        wrong.append("member")
    return found


def _kind(text: str, wrong: list[str]) -> AuditKind | None:
    if not text:
        return None
    try:
        return AuditKind(text)
    except ValueError:
        wrong.append("kind")
        return None


def _period(
    site: SiteRow, filters: Filters, wrong: list[str]
) -> tuple[datetime | None, datetime | None]:
    first = _day(filters.first) if filters.first else None
    last = _day(filters.last) if filters.last else None
    if filters.first and first is None:
        wrong.append("from")
    if filters.last and last is None:
        wrong.append("to")
    if first is not None and last is not None:
        if first > last:
            wrong.append("range")
        elif last - first >= timedelta(days=MAX_DAYS):
            wrong.append("long")
    return (
        None if first is None else local_day(first, site.tzinfo)[0],
        None if last is None else local_day(last, site.tzinfo)[1],
    )


def _cursor(text: str, wrong: list[str]) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) < 2**63:
        wrong.append("cursor")
        return None
    return int(text)


def read_filters(
    session: Session, site: SiteRow, filters: Filters
) -> tuple[Wanted | None, list[str]]:
    """The query `filters` ask for at `site`, or None and the codes of what is wrong."""
    wrong: list[str] = []
    if filters.door and filters.door not in {d.slug for d in _doors(session, site)}:
        wrong.append("door")
    member_id = _member(session, filters.member, wrong)
    kind = _kind(filters.kind, wrong)
    since, until = _period(site, filters, wrong)
    cursor = _cursor(filters.cursor, wrong)
    if wrong:
        return None, wrong
    wanted = Wanted(door=filters.door or None, member_id=member_id, kind=kind, since=since,
                    until=until, cursor=cursor)  # fmt: skip
    return wanted, []


def _doors(session: Session, site: SiteRow) -> list[DoorRow]:
    return list(
        session.scalars(select(DoorRow).where(DoorRow.site_id == site.id).order_by(DoorRow.slug))
    )


@router.get(PATH, response_class=HTMLResponse)
def audit_page(
    *,
    request: Request,
    reader: ManagerReader,
    session: SessionDep,
    site: Annotated[str | None, Query(max_length=64)] = None,
    door: Text = None,
    member: Text = None,
    kind: Text = None,
    first: Annotated[str | None, Query(alias="from", max_length=32)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=32)] = None,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
    verify: Annotated[str | None, Query(max_length=8)] = None,
) -> HTMLResponse:
    """The site's audit rows, newest first, `PAGE_SIZE` a page; `verify=1` walks the
    whole hash chain and says whether it holds."""
    session.connection(execution_options=READ_ONLY)
    row, sites = site_choice(session, reader, site)
    filters = Filters(door=door or "", member=member or "", kind=kind or "",
                      first=first or "", last=last or "", cursor=cursor or "")  # fmt: skip
    wanted, wrong = read_filters(session, row, filters)
    page = None
    if wanted is not None:
        page = audit.query(session, site=row.slug, door=wanted.door, member_id=wanted.member_id,
                           kind=wanted.kind, since=wanted.since, until=wanted.until,
                           limit=PAGE_SIZE, cursor=wanted.cursor)  # fmt: skip
    ids = {r.member_id for r in page.rows if r.member_id is not None} if page else set()
    members = session.scalars(select(MemberRow).where(MemberRow.id.in_(ids)))
    names = {member.id: member.name for member in members}
    checked = audit.verify(session) if verify else None
    return render(
        request, "audit/page.html", timezone=row.timezone, site=row, sites=sites, path=PATH,
        filters=filters, problems=[PROBLEMS[code] for code in wrong], page=page, names=names,
        kinds=KINDS, doors=_doors(session, row), checked=checked, actor_name=actor_name,
        show_count=reader.role is Role.ADMIN,
        older=None if page is None or page.next_cursor is None
        else filters.query(row, cursor=str(page.next_cursor)),
        newest=filters.query(row) if filters.cursor else None,
    )  # fmt: skip
