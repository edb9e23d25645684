"""Guests: staff (`/manage/guests`) and members (`/my/guests`) invite someone for a day
at a site; the guest is let in from the site's opening until its closing time that day.

The guest's credential is a visitor card that reception hands over and enrols on the
invitation's page (its UID typed, or typed by a desk reader that acts as a keyboard):
doors read badges, so a card is what opens them, and a card reused day after day needs
no printing. The e-mail (in the guest's language, through the server's SMTP settings)
tells them when and where, and to ask at reception; with no mail configured, the page
shows the same details for the host to pass on. Cancelling ends the access at once: the
allow-lists are republished after the commit (`ChangesDep`).
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Final, Literal

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.orm import Session

from ruche.server import registry
from ruche.server.access.invitations import (
    GuestRefused,
    Invitation,
    cancel_invitation,
    enrol_visitor_card,
    host_sites,
    invitation_of,
    invite_guest,
    list_invitations,
)
from ruche.server.api.deps import ChangesDep, SessionDep, id_path
from ruche.server.api.pages.forms import back, outcome
from ruche.server.api.pages.guard import ManagerReader, MemberReader, site_choice
from ruche.server.api.pages.rendering import page_locale, render, viewer_of
from ruche.server.api.policy import Principal, Scope, authorize
from ruche.server.errors import Invalid, NotFound
from ruche.server.i18n import LOCALES, N_, Formats, translations
from ruche.server.people.mail import Mail, MailError
from ruche.server.people.signin import People
from ruche.server.storage.models import GuestInvitationRow, MemberRow, SiteRow

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

STAFF_PATH: Final = "/manage/guests"
MEMBER_PATH: Final = "/my/guests"
MAX_UID_HEX: Final = 20
"""A card UID is 4, 7 or 10 bytes."""

NOTICES: Final = {
    "invited": N_("The guest is invited. An e-mail told them when and where."),
    "invited_no_mail": N_(
        "The guest is invited. No e-mail was sent (this server sends none): give them the"
        " details below."
    ),
    "invited_mail_failed": N_(
        "The guest is invited, but the e-mail could not be sent: give them the details below."
    ),
    "card": N_("The visitor card is theirs until the site closes."),
    "cancelled": N_("The invitation is cancelled: the doors no longer open for this guest."),
}
ERRORS: Final = {
    "name_missing": N_("Give the guest's name."),
    "bad_email": N_("Give the guest's e-mail address."),
    "bad_day": N_("Choose the day of the visit."),
    "day_past": N_("That day is over: invite for today or later."),
    "too_far": N_("Invite at most 90 days ahead."),
    "site_closed": N_("The site is closed that day: pick another day."),
    "site_closed_now": N_("The site has already closed today: pick another day."),
    "host_without_plan": N_("Your plan does not cover this site that day."),
    "already_member": N_("This person is a member: give them a day pass instead."),
    "guest_disabled": N_("This guest was disabled: ask the site's manager."),
    "cannot_invite": N_("This person cannot be invited as a guest: ask the site's manager."),
    "already_invited": N_("This guest is already invited there that day."),
    "ended": N_("This invitation has already ended."),
    "card_unreadable": N_("Type the card's UID in hexadecimal, as printed or read."),
    "card_revoked": N_("This card is revoked: take another one."),
    "card_in_use": N_("This card belongs to a member or to a guest still expected."),
}
_PRIVATE: Final = frozenset({"already_member", "guest_disabled"})
"""Refusals that would tell a member something about another person's account."""
_MAIL_NOTICE: Final = {
    "sent": "invited",
    "none": "invited_no_mail",
    "failed": "invited_mail_failed",
}


# --- the e-mail -------------------------------------------------------------------------------


def guest_mail(invitation: Invitation, site: SiteRow, host: str, locale: str) -> Mail:
    """The invitation's e-mail in `locale`: who invites, where, which day, until when."""
    _ = translations(locale).gettext
    formats = Formats(locale, site.timezone)
    values = {
        "host": host, "site": site.name, "day": formats.date(invitation.row.day, "full"),
        "until": formats.time(invitation.row.valid_until),
    }  # fmt: skip
    lines = [
        _("%(host)s invites you to %(site)s on %(day)s.") % values,
        _("The doors open for you all day.")
        if invitation.all_day
        else _("The doors open for you until %(until)s, when the site closes.") % values,
        _("Ask at reception for your visitor card, and give it back when you leave."),
    ]
    plain = "\n\n".join(lines) + "\n\n-- \nRuche\n"
    rich = "".join(f"<p>{_escape(line)}</p>" for line in lines)
    return Mail(
        to=invitation.guest.email,
        subject=_("Your invitation to %(site)s") % values,
        text=plain,
        html=f'<!doctype html><html lang="{locale}"><body>{rich}<p>Ruche</p></body></html>',
    )


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _send(request: Request, mail: Mail) -> Literal["sent", "none", "failed"]:
    people = getattr(request.app.state, "people", None)
    mailer = people.mailer if isinstance(people, People) else None
    if mailer is None:
        return "none"
    try:
        mailer.send(mail)
    except MailError as exc:
        log.error("the invitation for %s was not sent: %s", mail.to, exc)  # noqa: TRY400 - said in full
        return "failed"
    return "sent"


# --- shared by both sides ---------------------------------------------------------------------


Field = Annotated[str, Form(max_length=320)]


def _invite(
    request: Request,
    session: Session,
    changes: ChangesDep,
    *,
    reader: Principal,
    site: SiteRow,
    form: tuple[str, str, str, str],
    base: str,
) -> RedirectResponse:
    """Invite from the form `(name, email, day, language)`; to the invitation's page."""
    name, email, day, language = form
    now = datetime.now(UTC)
    try:
        try:
            local = date.fromisoformat(day)
        except ValueError:
            raise GuestRefused("bad_day", "no day") from None
        invitation = invite_guest(
            session, site=site, day=local, name=name[:200], email=email,
            host_member_id=reader.member_id, invited_by=reader.actor, now=now,
        )  # fmt: skip
    except GuestRefused as refused:
        session.rollback()
        code = refused.code
        if reader.member_id is not None and code in _PRIVATE:
            code = "cannot_invite"  # a member learns nothing of who else is a member
        return back(base, error=code, site=site.slug)
    except Invalid:
        session.rollback()
        return back(base, error="bad_email", site=site.slug)
    changes.site_changed(site.slug)
    changes.commit()
    host = reader.name
    if reader.member_id is not None:
        host = registry.get(session, MemberRow, reader.member_id).name
    locale = language if language in LOCALES else page_locale(request, viewer_of(request))
    sent = _send(request, guest_mail(invitation, site, host, locale))
    return back(f"{base}/{invitation.row.id}", done=_MAIL_NOTICE[sent])


def _cancel(
    session: Session, changes: ChangesDep, row: GuestInvitationRow, base: str
) -> RedirectResponse:
    site = registry.get(session, SiteRow, row.site_id)
    try:
        cancel_invitation(session, row, now=datetime.now(UTC))
    except GuestRefused as refused:
        return back(f"{base}/{row.id}", error=refused.code)
    changes.site_changed(site.slug)
    changes.commit()
    return back(f"{base}/{row.id}", done="cancelled")


def _detail(
    request: Request, session: Session, row: GuestInvitationRow, *, staff: bool
) -> HTMLResponse:
    site = registry.get(session, SiteRow, row.site_id)
    invitation = invitation_of(session, row)
    host = None if row.host_member_id is None else session.get(MemberRow, row.host_member_id)
    return render(
        request, "guests/detail.html", timezone=site.timezone, site=site,
        invitation=invitation, host=host, staff=staff, now=datetime.now(UTC),
        base=STAFF_PATH if staff else MEMBER_PATH, message=outcome(request, ERRORS, NOTICES),
    )  # fmt: skip


# --- staff ------------------------------------------------------------------------------------


def _staff_invitation(
    invitation_id: Annotated[int, id_path("An invitation id.")],
    reader: ManagerReader,
    session: SessionDep,
) -> GuestInvitationRow:
    """An invitation at a site the reader runs (403 for another site's)."""
    row = registry.get(session, GuestInvitationRow, invitation_id)
    authorize(reader, Scope.site(row.site_id))
    return row


def _own_invitation(
    invitation_id: Annotated[int, id_path("An invitation id.")],
    reader: MemberReader,
    session: SessionDep,
) -> GuestInvitationRow:
    """An invitation the reader made; another's is as absent as one that never was."""
    row = session.get(GuestInvitationRow, invitation_id)
    if row is None or row.host_member_id != reader.member_id:
        raise NotFound("Invitation", invitation_id)
    return row


StaffInvitation = Annotated[GuestInvitationRow, Depends(_staff_invitation)]
OwnInvitation = Annotated[GuestInvitationRow, Depends(_own_invitation)]


@router.get(STAFF_PATH)
def staff_guests(
    request: Request,
    reader: ManagerReader,
    session: SessionDep,
    site: Annotated[str | None, Query(max_length=64)] = None,
    day: date | None = None,
) -> HTMLResponse:
    """The site's invitations from `day` (today) on, and the form to invite."""
    chosen, sites = site_choice(session, reader, site)
    today = datetime.now(UTC).astimezone(chosen.tzinfo).date()
    day = day or today
    invitations = list_invitations(session, site_id=chosen.id, since=day)
    return render(
        request, "guests/list.html", timezone=chosen.timezone, site=chosen, sites=sites,
        day=day, today=today, invitations=invitations, staff=True, base=STAFF_PATH,
        heading=N_("Guests"),
        now=datetime.now(UTC), message=outcome(request, ERRORS, NOTICES),
    )  # fmt: skip


@router.post(STAFF_PATH)
def staff_invite(
    *,
    request: Request,
    reader: ManagerReader,
    session: SessionDep,
    changes: ChangesDep,
    site: Annotated[str, Form(max_length=64)],
    name: Field = "",
    email: Field = "",
    day: Field = "",
    language: Field = "",
) -> RedirectResponse:
    chosen, _ = site_choice(session, reader, site)
    return _invite(request, session, changes, reader=reader, site=chosen,
                   form=(name, email, day, language), base=STAFF_PATH)  # fmt: skip


@router.get(STAFF_PATH + "/{invitation_id}")
def staff_invitation(request: Request, row: StaffInvitation, session: SessionDep) -> HTMLResponse:
    return _detail(request, session, row, staff=True)


def _uid(text: str) -> bytes:
    """A card UID typed in hexadecimal, with or without spaces or colons."""
    cleaned = text.replace(" ", "").replace(":", "").lower()
    try:
        raw = bytes.fromhex(cleaned)
    except ValueError:
        raise GuestRefused("card_unreadable", "not hexadecimal") from None
    if not raw or len(cleaned) > MAX_UID_HEX:
        raise GuestRefused("card_unreadable", "no UID of a card")
    return raw


@router.post(STAFF_PATH + "/{invitation_id}/card")
def staff_card(
    row: StaffInvitation,
    session: SessionDep,
    changes: ChangesDep,
    uid: Annotated[str, Form(max_length=64)] = "",
) -> RedirectResponse:
    """Give the guest the visitor card of UID `uid` (hexadecimal, spaces and colons allowed)."""
    here = f"{STAFF_PATH}/{row.id}"
    try:
        enrol_visitor_card(session, row, _uid(uid), now=datetime.now(UTC))
    except GuestRefused as refused:
        session.rollback()
        return back(here, error=refused.code)
    changes.site_changed(registry.get(session, SiteRow, row.site_id).slug)
    changes.commit()
    return back(here, done="card")


@router.post(STAFF_PATH + "/{invitation_id}/cancel")
def staff_cancel(
    row: StaffInvitation, session: SessionDep, changes: ChangesDep
) -> RedirectResponse:
    return _cancel(session, changes, row, STAFF_PATH)


# --- members ----------------------------------------------------------------------------------


@router.get(MEMBER_PATH)
def my_guests(request: Request, reader: MemberReader, session: SessionDep) -> HTMLResponse:
    """The member's invitations from today on, and the form to invite."""
    assert reader.member_id is not None  # noqa: S101 - MemberReader says so
    now = datetime.now(UTC)
    sites = host_sites(session, reader.member_id, now)
    # A day back: the member's sites may be behind UTC.
    since = now.date() - timedelta(days=1)
    invitations = list_invitations(session, host_member_id=reader.member_id, since=since)
    site = sites[0] if sites else None
    return render(
        request, "guests/list.html", timezone=site.timezone if site else "UTC", site=site,
        sites=sites, day=now.date(), today=now.date(), invitations=invitations, staff=False,
        heading=N_("My guests"),
        base=MEMBER_PATH, now=now, message=outcome(request, ERRORS, NOTICES),
    )  # fmt: skip


@router.post(MEMBER_PATH)
def my_invite(
    *,
    request: Request,
    reader: MemberReader,
    session: SessionDep,
    changes: ChangesDep,
    site: Annotated[str, Form(max_length=64)],
    name: Field = "",
    email: Field = "",
    day: Field = "",
    language: Field = "",
) -> RedirectResponse:
    assert reader.member_id is not None  # noqa: S101 - MemberReader says so
    chosen = next(
        (s for s in host_sites(session, reader.member_id, datetime.now(UTC)) if s.slug == site),
        None,
    )
    if chosen is None:
        return back(MEMBER_PATH, error="host_without_plan")
    return _invite(request, session, changes, reader=reader, site=chosen,
                   form=(name, email, day, language), base=MEMBER_PATH)  # fmt: skip


@router.get(MEMBER_PATH + "/{invitation_id}")
def my_invitation(request: Request, row: OwnInvitation, session: SessionDep) -> HTMLResponse:
    return _detail(request, session, row, staff=False)


@router.post(MEMBER_PATH + "/{invitation_id}/cancel")
def my_cancel(row: OwnInvitation, session: SessionDep, changes: ChangesDep) -> RedirectResponse:
    return _cancel(session, changes, row, MEMBER_PATH)
