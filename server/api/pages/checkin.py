"""Desk check-in by QR code: `/my/checkin/<reference>` (a member says "I am at this desk")
and `/manage/desks/qr` (the staff's printable sheet of every desk's code).

A desk's code is the URL of its check-in page, with a signed desk reference
(`occupancy.checkin.desk_reference`) rather than its id: a member checks in at a desk whose
code they have seen, not at any desk by counting ids. The key is the server's cookie
key (`people.signing.load_secret`), read once per app; a new key means reprinting the
sheet. Codes are drawn on the server as inline SVG by `segno`: no script, prints as is.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Final

import segno
from fastapi import APIRouter, HTTPException, Path, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from markupsafe import Markup
from sqlalchemy.orm import Session

from ruche.server import registry
from ruche.server.api.deps import ChangesDep, SessionDep, get_services
from ruche.server.api.pages.forms import back, outcome
from ruche.server.api.pages.guard import ManagerReader, MemberReader, site_choice
from ruche.server.api.pages.rendering import render
from ruche.server.errors import Conflict, DomainError
from ruche.server.i18n import N_
from ruche.server.occupancy.checkin import check_in, current_booking, desk_of, desk_reference
from ruche.server.people.signin import People
from ruche.server.people.signing import load_secret
from ruche.server.storage.models import DeskRow, SiteRow, ZoneRow

router = APIRouter(include_in_schema=False)

CHECKIN: Final = "/my/checkin"
ERRORS: Final = {
    "taken": N_("Someone else has booked this desk for now. Check in at your own desk."),
    "refused": N_("This check-in was refused. Ask the site's manager."),
}
NOTICES: Final = {
    "checked_in": N_("You are checked in at this desk. Enjoy your day."),
}
Reference = Annotated[str, Path(max_length=60)]


def desk_key(request: Request) -> bytes:
    """The key desk references are signed with, read once per app."""
    key = getattr(request.app.state, "desk_key", None)
    if not isinstance(key, bytes):
        key = load_secret(get_services(request).sessions)
        request.app.state.desk_key = key
    return key


def checkin_url(request: Request, reference: str) -> str:
    """The address a desk's code holds: the server's public address (`[mail] base_url`,
    where its e-mailed links point), else the one this request came to."""
    people = getattr(request.app.state, "people", None)
    base = people.base_url if isinstance(people, People) and people.base_url else None
    root = (base or str(request.base_url)).rstrip("/")
    return f"{root}{CHECKIN}/{reference}"


def _desk(request: Request, session: Session, reference: str) -> DeskRow:
    """The desk `reference` was signed for; a 404 for a mangled or guessed one."""
    desk_id = desk_of(desk_key(request), reference)
    desk = None if desk_id is None else session.get(DeskRow, desk_id)
    if desk is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no desk has this code")
    return desk


@router.get(CHECKIN + "/{reference}", response_class=HTMLResponse)
def checkin_page(
    request: Request, reference: Reference, reader: MemberReader, session: SessionDep
) -> HTMLResponse:
    """What the desk's code opens: the desk, whose booking it has now, a button to check in."""
    desk = _desk(request, session, reference)
    site = registry.get(session, SiteRow, desk.site_id)
    zone = registry.get(session, ZoneRow, desk.zone_id)
    booking = current_booking(session, desk_id=desk.id, now=datetime.now(UTC))
    booked_by = None if booking is None else ("me" if booking.member_id == reader.member_id
                                              else "other")  # fmt: skip
    page = render(request, "checkin/checkin.html", timezone=site.timezone, desk=desk, zone=zone,
                  site=site, booking=booking, booked_by=booked_by, reference=reference,
                  message=outcome(request, ERRORS, NOTICES))  # fmt: skip
    session.commit()
    return page


@router.post(CHECKIN + "/{reference}")
def checkin_form(
    request: Request,
    reference: Reference,
    reader: MemberReader,
    session: SessionDep,
    changes: ChangesDep,
) -> RedirectResponse:
    """Check the member in at the desk; the live floor then shows them at it."""
    assert reader.member_id is not None  # noqa: S101 - MemberReader lets members only
    desk = _desk(request, session, reference)
    here = f"{CHECKIN}/{reference}"
    try:
        check_in(session, member_id=reader.member_id, desk_id=desk.id, now=datetime.now(UTC))
    except Conflict:
        return back(here, error="taken")
    except DomainError:
        return back(here, error="refused")
    changes.site_changed(registry.get(session, SiteRow, desk.site_id).slug)
    changes.commit()
    return back(here, done="checked_in")


@dataclass(frozen=True, slots=True)
class DeskCard:
    """One card of the sheet: a desk, its zone, its code and the address it holds."""

    slug: str
    zone: str
    url: str
    svg: Markup


@functools.lru_cache(maxsize=4096)
def qr_svg(url: str, label: str) -> Markup:
    """`url` as a QR code in inline SVG, sized by CSS; `label` its title (segno escapes
    it, and writes nothing else of ours). Cached: a code is about 6 ms of pure Python to
    draw, and a sheet of 200 desks would take over a second each time it is opened; the
    same URL and label always draw the same code."""
    code = segno.make(url, error="m", micro=False)
    svg = code.svg_inline(scale=1, border=2, omitsize=True, title=label, svgclass="qr")
    return Markup(svg)  # noqa: S704 - segno's markup, built from escaped values


@router.get("/manage/desks/qr", response_class=HTMLResponse)
def qr_sheet(
    request: Request,
    reader: ManagerReader,
    session: SessionDep,
    site: Annotated[str | None, Query(max_length=64)] = None,
) -> HTMLResponse:
    """A printable sheet: one card per desk of the site, with its name, zone and code."""
    key = desk_key(request)  # before this session's first read: SQLite's one write lock
    chosen, sites = site_choice(session, reader, site)
    zones = {zone.id: zone.name for zone in registry.list_zones(session, chosen.id)}
    desks = sorted(registry.list_desks(session, site_id=chosen.id),
                   key=lambda d: (zones.get(d.zone_id, ""), d.slug))  # fmt: skip
    cards = []
    for desk in desks:
        url = checkin_url(request, desk_reference(key, desk.id))
        cards.append(DeskCard(desk.slug, zones.get(desk.zone_id, ""), url,
                              qr_svg(url, desk.slug)))  # fmt: skip
    page = render(request, "checkin/qr_sheet.html", site=chosen, sites=sites, cards=cards)
    session.commit()
    return page
