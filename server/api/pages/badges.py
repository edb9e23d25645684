"""Badges on the pages: the staff's enrolment by tap, lost, revoked and found again on a
member's page (`/manage/members/{member_id}/...`), and a member's own `/my/badge`.

A badge reported lost is disabled through the registry (`BadgeStatus.DISABLED`, which a
badge found again leaves) and the sites sharing its key are told after the commit: the
door worker forgets its cached facts, and each agent's allow-list is republished with
the badge among the refused ones, within a second. A member reports only their own
badges lost; any other id, theirs to guess or not, is the same 404 page.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Form, HTTPException, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from sqlalchemy.orm import Session

from ruche.server import registry
from ruche.server.access.enrolment import cancel_enrolment, enrolment_state, open_enrolment
from ruche.server.api.deps import (
    BadgeInScope,
    Changes,
    ChangesDep,
    SessionDep,
    id_path,
    sites_of_key,
)
from ruche.server.api.pages.forms import back, outcome
from ruche.server.api.pages.guard import ManagerReader, MemberReader, site_choice
from ruche.server.api.pages.members import STATUS_LABELS, StaffMember, member_path
from ruche.server.api.pages.rendering import render
from ruche.server.api.policy import Scope, authorize
from ruche.server.errors import Conflict
from ruche.server.i18n import N_
from ruche.server.storage.enums import BadgeStatus
from ruche.server.storage.models import BadgeEnrolmentRow, BadgeRow, DoorRow

router = APIRouter(include_in_schema=False)

STATUSES: Final = {
    "lost": (BadgeStatus.DISABLED, "badge_lost"),
    "revoked": (BadgeStatus.REVOKED, "badge_revoked"),
    "found": (BadgeStatus.ACTIVE, "badge_found"),
}
"""What each badge form's `status` sets, and the notice that says so."""
MY_ERRORS: Final = {"badge_revoked": N_("This badge is revoked for good.")}
MY_NOTICES: Final = {
    "badge_lost": N_(
        "Thank you. This badge no longer opens any door. Ask the site's staff for a new one."
    )
}
Site = Annotated[str, Form(max_length=64)]


def _set_status(session: Session, changes: Changes, badge: BadgeRow, value: BadgeStatus) -> None:
    """Set `badge`'s status and tell every site sharing its key, after the commit."""
    registry.set_badge_status(session, badge.id, value)
    changes.site_changed(*(site.slug for site in sites_of_key(session, badge.key_id)))
    changes.commit()


# --- staff: a member's badges ------------------------------------------------------------


def _members_badge(member: StaffMember, badge: BadgeInScope) -> BadgeRow:
    """A badge of the member in the path that the reader may act on (the API's rule)."""
    if badge.member_id != member.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this member has no such badge")
    return badge


MembersBadge = Annotated[BadgeRow, Depends(_members_badge)]


@router.post("/manage/members/{member_id}/badges/{badge_id}")
def change_badge(
    *,
    reader: ManagerReader,
    member: StaffMember,
    badge: MembersBadge,
    session: SessionDep,
    changes: ChangesDep,
    site: Site = "",
    status_: Annotated[str, Form(alias="status", max_length=10)] = "",
) -> RedirectResponse:
    """Report a badge lost (disabled), revoke it for good, or let it open doors again."""
    chosen, _ = site_choice(session, reader, site or None)
    here = member_path(member, chosen, reader)
    if status_ not in STATUSES:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "status: lost, revoked, found")
    value, done = STATUSES[status_]
    try:
        _set_status(session, changes, badge, value)
    except Conflict:
        return back(here, error="badge_revoked")
    return back(here, done=done)


# --- staff: enrolment by tap -------------------------------------------------------------


@router.post("/manage/members/{member_id}/enrolments")
def start_enrolment(
    reader: ManagerReader,
    member: StaffMember,
    session: SessionDep,
    site: Site = "",
    door_id: Annotated[str, Form(max_length=20)] = "",
) -> RedirectResponse:
    """ "The next unknown badge tapped at this door belongs to this member", for a while."""
    chosen, _ = site_choice(session, reader, site or None)
    here = member_path(member, chosen, reader)
    door = session.get(DoorRow, int(door_id)) if door_id.isdigit() and len(door_id) < 12 else None
    if door is None or door.site_id != chosen.id:
        return back(here, error="bad_door")
    authorize(reader, Scope.site(door.site_id))
    try:
        open_enrolment(session, door_id=door.id, member_id=member.id, actor=reader.actor,
                       now=datetime.now(UTC))  # fmt: skip
    except Conflict:
        return back(here, error="door_busy")
    session.commit()
    return back(here, done="enrolment_open")


def _members_enrolment(
    enrolment_id: Annotated[int, id_path("An enrolment id.")],
    reader: ManagerReader,
    member: StaffMember,
    session: SessionDep,
) -> BadgeEnrolmentRow:
    row = session.get(BadgeEnrolmentRow, enrolment_id)
    if row is None or row.member_id != member.id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "this member has no such enrolment")
    door = registry.get(session, DoorRow, row.door_id)
    authorize(reader, Scope.site(door.site_id))
    return row


MembersEnrolment = Annotated[BadgeEnrolmentRow, Depends(_members_enrolment)]


@router.get("/manage/members/{member_id}/enrolments/{enrolment_id}")
def enrolment_status(enrolment: MembersEnrolment) -> JSONResponse:
    """Where an enrolment stands (`pending`, `done`, `expired`): what the member page's
    script polls while it waits for the tap."""
    state = enrolment_state(enrolment.done_at, enrolment.expires_at, datetime.now(UTC))
    return JSONResponse({"state": state.value}, headers={"Cache-Control": "no-store"})


@router.post("/manage/members/{member_id}/enrolments/{enrolment_id}/cancel")
def stop_enrolment(
    reader: ManagerReader,
    member: StaffMember,
    enrolment: MembersEnrolment,
    session: SessionDep,
    site: Site = "",
) -> RedirectResponse:
    """Stop waiting for the tap."""
    chosen, _ = site_choice(session, reader, site or None)
    cancel_enrolment(session, enrolment, datetime.now(UTC))
    session.commit()
    return back(member_path(member, chosen, reader), done="enrolment_cancelled")


# --- a member: my badge ------------------------------------------------------------------


@router.get("/my/badge", response_class=HTMLResponse)
def my_badge_page(request: Request, reader: MemberReader, session: SessionDep) -> HTMLResponse:
    """The member's own badges, each active one with a "report lost" button."""
    badges = list(reversed(registry.list_badges(session, member_id=reader.member_id)))
    return render(request, "members/my_badge.html", badges=badges, statuses=STATUS_LABELS,
                  message=outcome(request, MY_ERRORS, MY_NOTICES))  # fmt: skip


@router.post("/my/badge/lost")
def report_my_badge_lost(
    reader: MemberReader,
    session: SessionDep,
    changes: ChangesDep,
    badge_id: Annotated[str, Form(max_length=20)] = "",
) -> RedirectResponse:
    """Report one's own badge lost: it stops opening doors, online and offline."""
    badge = (
        session.get(BadgeRow, int(badge_id)) if badge_id.isdigit() and len(badge_id) < 12 else None
    )
    if badge is None or badge.member_id != reader.member_id:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "you have no such badge")
    if badge.status is BadgeStatus.REVOKED:
        return back("/my/badge", error="badge_revoked")
    _set_status(session, changes, badge, BadgeStatus.DISABLED)
    return back("/my/badge", done="badge_lost")
