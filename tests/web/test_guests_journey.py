"""A manager books for a member in the day view, moves and cancels the booking, then
invites a guest and gives them a visitor card at reception: in Chromium, against the
running site of journeys.py. The guest's card opens the door until the site closes (online
and in the door's cached allow-list) and no longer once the invitation is cancelled. The
pages pass axe and fit a phone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from journeys import MANAGER, NEW_UID, Journey
from playwright.sync_api import Page
from sqlalchemy import select

from ruche.server.storage.models import GuestInvitationRow

pytestmark = pytest.mark.integration

GUEST = "grace@example.org"


def fits(page: Page) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url} scrolls sideways: {width}"


def test_a_manager_books_moves_cancels_and_invites_a_guest(journey: Journey, browse, audit):
    page = browse("desktop", locale="fr-FR")
    journey.sign_in(page, MANAGER)
    book_move_and_cancel(journey, page, browse, audit)
    invite_and_let_in(journey, page, audit)


def book_move_and_cancel(journey: Journey, page: Page, browse, audit) -> None:
    """The day view: book d1 for Bob, move it to d2, cancel it."""
    tomorrow = datetime.now(ZoneInfo("Europe/Paris")).date() + timedelta(days=1)
    # Book d1 for Bob, found by the member search.
    page.goto(journey.url(f"/manage/bookings?site={journey.slug}&day={tomorrow}"))
    page.get_by_label("Trouver un membre (nom ou e-mail)").fill("bob")
    page.get_by_role("button", name="Rechercher").click()
    page.wait_for_url("**q=bob")
    page.get_by_label("Membre", exact=True).select_option(label="Bob Marley (bob@example.org)")
    page.get_by_label("Poste ou salle").select_option(label="d1")
    page.get_by_label("De", exact=True).fill("09:00")
    page.get_by_label("À", exact=True).fill("11:00")
    page.get_by_role("button", name="Réserver", exact=True).click()
    page.wait_for_url("**done=created")
    assert page.get_by_role("status").inner_text() == "La réservation est faite."
    row = page.get_by_role("row", name="d1")
    assert "Bob Marley" in row.inner_text()
    assert "09:00\u201311:00" in row.inner_text()
    audit(page, "bookings-day-desktop")

    # Move it to d2 in the afternoon, then cancel it.
    page.get_by_role("link", name="Déplacer la réservation de Bob Marley").click()
    page.wait_for_url("**/move")
    page.get_by_label("Poste ou salle").select_option(label="d2")
    page.get_by_label("De", exact=True).fill("14:00")
    page.get_by_label("À", exact=True).fill("16:00")
    audit(page, "bookings-move-desktop")
    page.get_by_role("button", name="Déplacer", exact=True).click()
    page.wait_for_url("**done=moved")
    assert "14:00\u201316:00" in page.get_by_role("row", name="d2").inner_text()
    assert "Bob Marley" not in page.get_by_role("row", name="d1").inner_text()

    phone = browse("phone", locale="fr-FR")
    journey.sign_in(phone, MANAGER)
    phone.goto(page.url)
    fits(phone)
    audit(phone, "bookings-day-phone")

    page.get_by_role("button", name="Annuler la réservation de Bob Marley").click()
    page.wait_for_url("**done=cancelled")
    assert page.get_by_role("row", name="d2").inner_text().split() == ["d2", "Libre"]


def invite_and_let_in(journey: Journey, page: Page, audit) -> None:
    """A guest for today, in English, with a visitor card from reception."""
    assert journey.tap(NEW_UID).reason == "unknown_badge"
    page.goto(journey.url("/manage/guests"))
    page.get_by_label("Nom de l'invité").fill("Grace Hopper")
    page.get_by_label("E-mail de l'invité").fill(GUEST)
    page.get_by_label("Langue de l'e-mail").select_option(label="English")
    page.get_by_role("button", name="Inviter", exact=True).click()
    page.wait_for_url("**done=invited")
    mail = journey.inbox.to(GUEST)
    assert mail["Subject"] == "Your invitation to Ruche Lyon"
    page.get_by_label("UID de la carte visiteur").fill(NEW_UID.hex())
    page.get_by_role("button", name="Remettre cette carte").click()
    page.wait_for_url("**done=card")
    audit(page, "guests-invitation-desktop")

    # Open now, online and offline; the cached entry ends when the site closes.
    assert journey.tap(NEW_UID).allowed
    assert journey.wait_cached(NEW_UID, timeout=3.0), "the allow-list carries the visitor card"
    with journey.sessions() as session:
        closing = session.scalars(select(GuestInvitationRow.valid_until)).one()
    cached = journey.cached()
    assert cached is not None
    (entry,) = [e for e in cached.entries if e.token == journey.token(NEW_UID)]
    assert entry.windows[-1].end == closing
    assert journey.offline_verdict(NEW_UID, closing - timedelta(seconds=1)).allowed
    assert not journey.offline_verdict(NEW_UID, closing).allowed

    # Cancelled from the list's link: refused at once online, and gone from the cached list.
    page.get_by_role("link", name="Retour aux invités").click()
    page.wait_for_url("**/manage/guests")
    audit(page, "guests-list-desktop")
    page.get_by_role("link", name="Grace Hopper").click()
    page.get_by_role("button", name="Annuler l'invitation").click()
    page.wait_for_url("**done=cancelled")
    refused = journey.tap(NEW_UID)
    assert (refused.allowed, refused.source, refused.reason) == (False, "online", "member_inactive")
    assert journey.wait_cached(NEW_UID, present=False, timeout=3.0)
    assert closing > datetime.now(UTC)
