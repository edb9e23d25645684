"""The staff's member pages: `/manage/members` (search, filter, page through, add one)
and `/manage/members/{member_id}` (profile, plan, active or not, badges).

Who sees whom, with the API's one rule (`permits`): an admin every member; a site's
manager the members *of their site*, those with a membership (past, present or future)
of a plan that opens it, or a badge under its key. A member id outside that is a 403
page, an unknown one a 404. Plans offered are those that open the page's site; changing
a plan needs the right to both the plan ended and the plan started.

Every change goes through the registry (and `ruche.server.people.accounts` for a sign-in
account) in the request's transaction; what may change a door's answer is announced with
`ChangesDep`, so the doors' allow-lists are republished after the commit.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Form, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import func, or_, select, union
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ruche.server import registry
from ruche.server.access.enrolment import EnrolmentState, enrolment_state, member_enrolments
from ruche.server.api.cookies import get_people
from ruche.server.api.deps import ChangesDep, SessionDep, id_path
from ruche.server.api.pages.forms import back, outcome
from ruche.server.api.pages.guard import ManagerReader, site_choice
from ruche.server.api.pages.rendering import render
from ruche.server.api.policy import Principal, Scope, authorize, permits
from ruche.server.errors import Conflict, Invalid
from ruche.server.i18n import LOCALES, N_
from ruche.server.people import accounts
from ruche.server.storage.enums import Role
from ruche.server.storage.models import (
    BadgeEnrolmentRow,
    BadgeRow,
    DoorRow,
    MemberRow,
    MembershipRow,
    PersonRow,
    PlanRow,
    SiteRow,
    plan_sites,
)

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

PAGE_SIZE: Final = 50
MAX_PAGE_NUMBER: Final = 100_000
NOWHERE: Final[frozenset[int]] = frozenset()
RECENT_ENROLMENTS: Final = timedelta(minutes=30)
"""How far back the member page lists enrolments by tap."""

ERRORS: Final = {
    "name_missing": N_("Give the member a name."),
    "bad_email": N_("This is not an email address (name@example.org)."),
    "email_taken": N_("Another member already uses this email."),
    "account_taken": N_("A sign-in account already uses this email."),
    "bad_date": N_("Give a date as year-month-day, for example 2026-12-01."),
    "bad_plan": N_("Choose one of the plans of this site."),
    "plan_overlap": N_(
        "Another plan already starts on or after this date: choose a later date, or ask an"
        " admin to correct the memberships."
    ),
    "bad_door": N_("Choose one of the doors of this site."),
    "door_busy": N_(
        "Another enrolment is waiting at this door. Wait until it is done or has expired."
    ),
    "badge_revoked": N_("This badge is revoked for good: enrol a new card instead."),
}
NOTICES: Final = {
    "created": N_("The member was added."),
    "created_link": N_(
        "The member was added, and a link to choose their password was sent to their email."
    ),
    "created_no_mail": N_(
        "The member was added with a sign-in account. No mail server is configured: they"
        " can sign in once a password is set (ruche admin person password)."
    ),
    "created_link_later": N_(
        "The member was added with a sign-in account. Too many links were sent from here"
        " just now: they can ask for one with \u201cForgot your password?\u201d."
    ),
    "saved": N_("The changes were saved."),
    "plan_changed": N_("The plan was changed."),
    "deactivated": N_("The member was deactivated: their badges open no door."),
    "reactivated": N_("The member was reactivated."),
    "enrolment_open": N_("Waiting for a tap at the door."),
    "enrolled": N_("The badge was enrolled."),
    "enrolment_cancelled": N_("The enrolment was cancelled."),
    "badge_lost": N_("The badge was reported lost: it no longer opens any door."),
    "badge_revoked": N_("The badge was revoked."),
    "badge_found": N_("The badge opens doors again."),
}
STATUS_LABELS: Final = {
    "active": N_("Active"),
    "disabled": N_("Disabled (lost)"),
    "revoked": N_("Revoked"),
}
"""A badge's status as the pages name it: a disabled badge is, most of the time, a lost one."""
ACTIVE_FILTERS: Final = {"": N_("All"), "yes": N_("Active"), "no": N_("Inactive")}

Text = Annotated[str, Form(max_length=400)]
SiteSlug = Annotated[str | None, Query(max_length=64)]


# --- who a manager may see ---------------------------------------------------------------


def member_sites(session: Session, member_id: int) -> frozenset[int]:
    """The sites a member belongs to, as staff see them: those of their plans (at any
    time) and those sharing the keys of their badges."""
    by_plan = (
        select(plan_sites.c.site_id)
        .join(MembershipRow, MembershipRow.plan_id == plan_sites.c.plan_id)
        .where(MembershipRow.member_id == member_id)
    )
    by_badge = (
        select(SiteRow.id)
        .join(BadgeRow, BadgeRow.key_id == SiteRow.key_id)
        .where(BadgeRow.member_id == member_id)
    )
    return frozenset(session.scalars(select(union(by_plan, by_badge).subquery().c[0])))


def _staff_member(
    member_id: Annotated[int, id_path("A member id.")], reader: ManagerReader, session: SessionDep
) -> MemberRow:
    member = registry.get(session, MemberRow, member_id)
    authorize(reader, Scope(sites=member_sites(session, member.id)))
    return member


StaffMember = Annotated[MemberRow, Depends(_staff_member)]
"""A member the staff reader may see (a 403 page otherwise, 404 for an unknown id)."""


def _site_members(site: SiteRow) -> ColumnElement[bool]:
    """The condition "a member of `site`" (`member_sites`, turned around)."""
    by_plan = (
        select(MembershipRow.member_id)
        .join(plan_sites, plan_sites.c.plan_id == MembershipRow.plan_id)
        .where(plan_sites.c.site_id == site.id)
    )
    by_badge = select(BadgeRow.member_id).where(BadgeRow.key_id == site.key_id)
    return or_(MemberRow.id.in_(by_plan), MemberRow.id.in_(by_badge))


def site_plans(session: Session, site: SiteRow) -> list[PlanRow]:
    """The plans that open `site`, by name."""
    return list(
        session.scalars(
            select(PlanRow)
            .join(plan_sites, plan_sites.c.plan_id == PlanRow.id)
            .where(plan_sites.c.site_id == site.id)
            .order_by(PlanRow.name)
        )
    )


def _plan_of_site(session: Session, site: SiteRow, raw: str) -> PlanRow | None:
    """The plan the form names, if it opens `site`."""
    plan_id = int(raw) if raw.isdigit() and len(raw) < 12 else None
    return next((plan for plan in site_plans(session, site) if plan.id == plan_id), None)


def local_midnight(site: SiteRow, day: date) -> datetime:
    """The instant `day` starts at the site, in UTC."""
    return datetime.combine(day, time.min, tzinfo=site.tzinfo).astimezone(UTC)


def today_at(site: SiteRow) -> date:
    return datetime.now(site.tzinfo).date()


def _parse_day(raw: str) -> date | None:
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        return None


def member_path(member: MemberRow, site: SiteRow, reader: Principal) -> str:
    """The member page's path, with the site when the reader might have several."""
    path = f"/manage/members/{member.id}"
    return path if reader.role is not Role.ADMIN else f"{path}?site={site.slug}"


# --- the list ----------------------------------------------------------------------------


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _current_plans(session: Session, member_ids: Sequence[int], now: datetime) -> dict[int, str]:
    """The name of each member's plan at `now`, for those who have one."""
    if not member_ids:
        return {}
    rows = session.execute(
        select(MembershipRow.member_id, PlanRow.name)
        .join(PlanRow, PlanRow.id == MembershipRow.plan_id)
        .where(
            MembershipRow.member_id.in_(member_ids),
            MembershipRow.starts_at <= now,
            or_(MembershipRow.ends_at.is_(None), MembershipRow.ends_at > now),
        )
        .order_by(MembershipRow.starts_at)
    )
    return {row[0]: row[1] for row in rows}


@router.get("/manage/members", response_class=HTMLResponse)
def members_page(
    *,
    request: Request,
    reader: ManagerReader,
    session: SessionDep,
    site: SiteSlug = None,
    q: Annotated[str, Query(max_length=200)] = "",
    active: Annotated[str, Query(max_length=3)] = "",
    page: Annotated[int, Query(ge=1, le=MAX_PAGE_NUMBER)] = 1,
) -> HTMLResponse:
    """The site's members, searched by name or email, filtered by active or not, a page
    of `PAGE_SIZE` at a time."""
    chosen, sites = site_choice(session, reader, site)
    query = select(MemberRow).where(_site_members(chosen))
    search = q.strip().lower()
    if search:
        pattern = _like(search)
        query = query.where(
            or_(
                func.lower(MemberRow.name).like(pattern, escape="\\"),
                MemberRow.email.like(pattern, escape="\\"),
            )
        )
    if active in ("yes", "no"):
        query = query.where(MemberRow.active == (active == "yes"))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    pages = max(1, math.ceil(total / PAGE_SIZE))
    page = min(page, pages)
    members = list(
        session.scalars(
            query.order_by(MemberRow.name, MemberRow.id)
            .limit(PAGE_SIZE)
            .offset((page - 1) * PAGE_SIZE)
        )
    )
    plans = _current_plans(session, [m.id for m in members], datetime.now(UTC))
    params = {"site": chosen.slug if len(sites) > 1 else None, "q": q or None,
              "active": active or None}  # fmt: skip
    return render(
        request, "members/list.html", timezone=chosen.timezone,
        site=chosen, sites=sites, members=members, plans=plans, total=total, page=page,
        pages=pages, q=q, active=active, filters=ACTIVE_FILTERS,
        params={k: v for k, v in params.items() if v is not None},
        message=outcome(request, ERRORS, NOTICES),
    )  # fmt: skip


# --- adding one --------------------------------------------------------------------------


@dataclass
class NewMember:
    """What the add form holds, kept to show again when it is refused."""

    name: str = ""
    email: str = ""
    plan_id: str = ""
    starts_on: str = ""
    account: bool = True
    locale: str = "fr"


def _new_form(
    request: Request,
    session: Session,
    reader: Principal,
    site: SiteRow,
    form: NewMember,
    *,
    error: str | None = None,
    status_code: int = 200,
) -> HTMLResponse:
    sites = site_choice(session, reader, site.slug)[1]
    return render(
        request, "members/new.html", timezone=site.timezone, status_code=status_code,
        site=site, sites=sites, plans=site_plans(session, site), form=form,
        locales=LOCALES, mail=get_people(request).mailer is not None,
        message=None if error is None else {"kind": "error", "text": ERRORS[error]},
    )  # fmt: skip


@router.get("/manage/members/new", response_class=HTMLResponse)
def new_member_page(
    request: Request, reader: ManagerReader, session: SessionDep, site: SiteSlug = None
) -> HTMLResponse:
    """The form that adds a member: name, email, plan from a date, and a sign-in account."""
    chosen, _ = site_choice(session, reader, site)
    form = NewMember(starts_on=today_at(chosen).isoformat(), locale="fr")
    return _new_form(request, session, reader, chosen, form)


class Refused(Exception):  # noqa: N818 - a form refused, not a failure
    """A form refused with one of `ERRORS`' codes."""

    def __init__(self, code: str, status_code: int = status.HTTP_422_UNPROCESSABLE_CONTENT) -> None:
        super().__init__(code)
        self.code = code
        self.status_code = status_code


def _checked_email(raw: str) -> str:
    try:
        return accounts.normalize_email(raw)
    except Invalid:
        raise Refused("bad_email") from None


@router.post("/manage/members/new", response_model=None)
def create_member(
    *,
    request: Request,
    reader: ManagerReader,
    session: SessionDep,
    changes: ChangesDep,
    site: Annotated[str, Form(max_length=64)] = "",
    name: Text = "",
    email: Text = "",
    plan_id: Annotated[str, Form(max_length=20)] = "",
    starts_on: Annotated[str, Form(max_length=20)] = "",
    account: Annotated[str, Form(max_length=10)] = "",
    locale: Annotated[str, Form(max_length=5)] = "fr",
) -> Response:
    """Add a member on a plan of the site from a date; with a sign-in account if asked,
    and, where mail is set up, a link to choose their password."""
    chosen, _ = site_choice(session, reader, site or None)
    form = NewMember(name, email, plan_id, starts_on, account == "yes",
                     locale if locale in LOCALES else "fr")  # fmt: skip
    now = datetime.now(UTC)
    try:
        member, plan = _add_member(session, reader, chosen, form, now)
    except Refused as refused:
        session.rollback()
        return _new_form(request, session, reader, chosen, form, error=refused.code,
                         status_code=refused.status_code)  # fmt: skip
    changes.site_changed(*(s.slug for s in plan.sites))
    changes.commit()
    done = "created"
    if form.account:
        done = _send_password_link(request, member.email, now)
    return back(member_path(member, chosen, reader), done=done)


def _add_member(
    session: Session, reader: Principal, site: SiteRow, form: NewMember, now: datetime
) -> tuple[MemberRow, PlanRow]:
    if not form.name.strip():
        raise Refused("name_missing")
    email = _checked_email(form.email)
    plan = _plan_of_site(session, site, form.plan_id)
    if plan is None:
        raise Refused("bad_plan")
    authorize(reader, Scope(sites=frozenset(s.id for s in plan.sites)))
    day = _parse_day(form.starts_on)
    if day is None:
        raise Refused("bad_date")
    try:
        member = registry.create_member(session, name=form.name, email=email)
    except Conflict:
        raise Refused("email_taken", status.HTTP_409_CONFLICT) from None
    registry.create_membership(
        session, member_id=member.id, plan_id=plan.id, starts_at=local_midnight(site, day)
    )
    if form.account:
        try:
            accounts.create_person(session, email=email, role=Role.MEMBER, member_id=member.id,
                                   now=now, locale=form.locale)  # fmt: skip
        except Conflict:
            raise Refused("account_taken", status.HTTP_409_CONFLICT) from None
    return member, plan


def _send_password_link(request: Request, email: str, now: datetime) -> str:
    """Mail the new account a link to choose its password (the "forgot password" link);
    the notice code that says what happened."""
    people = get_people(request)
    if people.mailer is None:
        return "created_no_mail"
    address = request.client.host if request.client is not None else "unknown"
    sent = people.send_link("reset", email, address=address, base_url=str(request.base_url),
                            now=now)  # fmt: skip
    return "created_link" if sent == "sent" else "created_link_later"


# --- one member --------------------------------------------------------------------------


@dataclass(frozen=True)
class MembershipView:
    plan: str
    first_day: date
    last_day: date | None
    """The last day it covers (its end is exclusive); None: open-ended."""
    current: bool


def _memberships(session: Session, member: MemberRow, site: SiteRow) -> list[MembershipView]:
    now = datetime.now(UTC)
    tz = site.tzinfo
    views = []
    for m in registry.list_memberships(session, member_id=member.id):
        plan = registry.get(session, PlanRow, m.plan_id)
        last = None if m.ends_at is None else (m.ends_at.astimezone(tz) - timedelta(minutes=1))
        views.append(
            MembershipView(
                plan=plan.name,
                first_day=m.starts_at.astimezone(tz).date(),
                last_day=None if last is None else last.date(),
                current=m.starts_at <= now and (m.ends_at is None or now < m.ends_at),
            )
        )
    return sorted(views, key=lambda v: v.first_day, reverse=True)


def visible_badges(session: Session, reader: Principal, member: MemberRow) -> list[BadgeRow]:
    """The member's badges the reader may act on (`BadgeInScope`'s rule: a badge belongs
    to every site sharing its key), newest first."""
    sites_by_key: dict[int, frozenset[int]] = {}
    for site in registry.list_sites(session):
        sites_by_key[site.key_id] = sites_by_key.get(site.key_id, frozenset()) | {site.id}
    badges = registry.list_badges(session, member_id=member.id)
    return [badge for badge in reversed(badges)
            if permits(reader, Scope(sites=sites_by_key.get(badge.key_id, NOWHERE)))]  # fmt: skip


@router.get("/manage/members/{member_id}", response_class=HTMLResponse)
def member_page(
    request: Request,
    reader: ManagerReader,
    member: StaffMember,
    session: SessionDep,
    site: SiteSlug = None,
) -> HTMLResponse:
    """A member: profile, plan, active or not, badges and enrolment by tap."""
    chosen, sites = site_choice(session, reader, site)
    now = datetime.now(UTC)
    pending: tuple[BadgeEnrolmentRow, DoorRow] | None = None
    finished: list[tuple[BadgeEnrolmentRow, EnrolmentState, DoorRow]] = []
    for row in member_enrolments(session, member.id, since=now - RECENT_ENROLMENTS):
        state = enrolment_state(row.done_at, row.expires_at, now)
        door = registry.get(session, DoorRow, row.door_id)
        if state is not EnrolmentState.PENDING:
            finished.append((row, state, door))
        elif pending is None:
            pending = (row, door)
    person = session.scalars(select(PersonRow).where(PersonRow.member_id == member.id)).first()
    return render(
        request, "members/detail.html", timezone=chosen.timezone,
        member=member, site=chosen, sites=sites, here=member_path(member, chosen, reader),
        memberships=_memberships(session, member, chosen), plans=site_plans(session, chosen),
        today=today_at(chosen).isoformat(), badges=visible_badges(session, reader, member),
        doors=registry.list_doors(session, site_id=chosen.id), finished=finished,
        pending=None if pending is None else pending[0],
        pending_door=None if pending is None else pending[1],
        person=person, statuses=STATUS_LABELS,
        message=outcome(request, ERRORS, NOTICES),
    )  # fmt: skip


@router.post("/manage/members/{member_id}/profile")
def save_profile(
    *,
    reader: ManagerReader,
    member: StaffMember,
    session: SessionDep,
    changes: ChangesDep,
    site: Annotated[str, Form(max_length=64)] = "",
    name: Text = "",
    email: Text = "",
) -> RedirectResponse:
    """Rename the member or change their email (their sign-in account's with it)."""
    chosen, _ = site_choice(session, reader, site or None)
    here = member_path(member, chosen, reader)
    if not name.strip():
        return back(here, error="name_missing")
    try:
        cleaned = _checked_email(email)
    except Refused as refused:
        return back(here, error=refused.code)
    person = session.scalars(select(PersonRow).where(PersonRow.member_id == member.id)).first()
    try:
        registry.update_member(session, member.id, name=name.strip(), email=cleaned)
    except Conflict:
        return back(here, error="email_taken")
    if person is not None and person.email != cleaned:
        if accounts.find_person(session, cleaned) is not None:
            session.rollback()
            return back(here, error="account_taken")
        person.email = cleaned
    changes.commit()
    return back(here, done="saved")


def plan_change(memberships: Sequence[MembershipRow], start: datetime) -> list[MembershipRow]:
    """The memberships a new plan from `start` ends at `start` (so that their last day is
    the day before): those still running then. Refused (`plan_overlap`) when one starts
    at or after `start`, as it could not end the day before."""
    if any(m.starts_at >= start for m in memberships):
        raise Refused("plan_overlap", status.HTTP_409_CONFLICT)
    return [m for m in memberships if m.ends_at is None or m.ends_at > start]


@router.post("/manage/members/{member_id}/plan")
def change_plan(
    *,
    reader: ManagerReader,
    member: StaffMember,
    session: SessionDep,
    changes: ChangesDep,
    site: Annotated[str, Form(max_length=64)] = "",
    plan_id: Annotated[str, Form(max_length=20)] = "",
    starts_on: Annotated[str, Form(max_length=20)] = "",
) -> RedirectResponse:
    """Put the member on another plan from a date: the plan running then ends the day
    before, the new one starts that day, open-ended."""
    chosen, _ = site_choice(session, reader, site or None)
    here = member_path(member, chosen, reader)
    plan = _plan_of_site(session, chosen, plan_id)
    if plan is None:
        return back(here, error="bad_plan")
    day = _parse_day(starts_on)
    if day is None:
        return back(here, error="bad_date")
    start = local_midnight(chosen, day)
    try:
        ending = plan_change(registry.list_memberships(session, member_id=member.id), start)
    except Refused as refused:
        return back(here, error=refused.code)
    # Ending a plan of another site is that site's business too: every plan touched is
    # authorised before anything is written.
    touched = [plan, *(registry.get(session, PlanRow, m.plan_id) for m in ending)]
    for each in touched:
        authorize(reader, Scope(sites=frozenset(site.id for site in each.sites)))
    for membership in ending:
        registry.end_membership(session, membership.id, start)
    registry.create_membership(session, member_id=member.id, plan_id=plan.id, starts_at=start)
    changes.site_changed(*dict.fromkeys(site.slug for each in touched for site in each.sites))
    changes.commit()
    return back(here, done="plan_changed")


@router.post("/manage/members/{member_id}/active")
def set_active(
    *,
    reader: ManagerReader,
    member: StaffMember,
    session: SessionDep,
    changes: ChangesDep,
    site: Annotated[str, Form(max_length=64)] = "",
    active: Annotated[str, Form(max_length=3)] = "",
) -> RedirectResponse:
    """Deactivate a member (none of their badges opens a door, anywhere) or reactivate them."""
    chosen, _ = site_choice(session, reader, site or None)
    value = active == "yes"
    registry.update_member(session, member.id, active=value)
    changes.site_changed(*(s.slug for s in registry.list_sites(session)))
    changes.commit()
    return back(member_path(member, chosen, reader), done="reactivated" if value else "deactivated")


__all__ = [
    "ERRORS",
    "NOTICES",
    "STATUS_LABELS",
    "Refused",
    "StaffMember",
    "local_midnight",
    "member_path",
    "member_sites",
    "plan_change",
    "router",
    "visible_badges",
]
