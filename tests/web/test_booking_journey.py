"""A member's day, in Chromium over a running site (tests/web/journeys.py): Ada, on a
booking-only plan, signs in in French and books a free desk for today on the floor plan,
with the keyboard; the door agent's cached allow-list lets her badge in within a second;
the door opens to her tap; she opens the desk's QR code and checks in, and the live floor
shows the desk as hers. Every page passes axe and fits a phone."""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from typing import Any

import pytest
from journeys import ADA, ADA_UID, MANAGER, Journey
from playwright.sync_api import Page

pytestmark = pytest.mark.integration


def fits(page) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url} scrolls sideways: {width}"


def test_a_member_books_a_desk_taps_in_and_checks_in(journey: Journey, browse, audit, offline):
    assert not journey.tap(ADA_UID).allowed, "booking-only, and no booking yet"

    # The staff's sheet: one card per desk, its code holding the check-in address.
    staff = browse("desktop", locale="fr-FR")
    journey.sign_in(staff, MANAGER)
    staff.goto(journey.url("/manage/desks/qr"))
    card = staff.locator(".qr-card", has=staff.locator(".qr-desk", has_text="d2"))
    assert card.locator("svg").count() == 1
    assert card.locator(".qr-zone").inner_text() == "Open space"
    address = card.locator(".qr-url").inner_text()
    audit(staff, "desk-qr-sheet-fr-desktop")

    # Ada books d2 for today, with the keyboard, on the plan of her site.
    page = browse("phone", locale="fr-FR")
    journey.sign_in(page, ADA)
    page.goto(journey.url("/my/book"))
    assert page.inner_text("h1") == "Réserver un poste"
    fits(page)
    audit(page, "book-fr-phone")
    desk = page.get_by_role("button", name="Réserver le poste d2 Libre")
    desk.focus()
    pressed = time.monotonic()
    # Playwright's routes (the offline guard) run only while it is waited on: the request
    # would stall in a plain sleep, so wait for the page first, then for the rest of 1 s.
    with page.expect_navigation(url="**done=booked**"):
        page.keyboard.press("Enter")
    left = 1.0 - (time.monotonic() - pressed)
    assert journey.wait_cached(ADA_UID, timeout=max(left, 0.0)), "in the door's list in 1 s"
    assert page.get_by_role("status").inner_text().startswith("Votre poste est réservé.")
    assert "À vous" in page.locator(".desk-yours", has_text="d2").inner_text()
    tap = journey.tap(ADA_UID)
    assert (tap.allowed, tap.source) == (True, "online"), "the door opens to her tap"
    assert journey.door.released, "its strike is released"

    # She scans the desk's code: its address, on this server.
    path = urllib.parse.urlsplit(address).path
    page.goto(journey.url(path))
    assert page.inner_text("h1") == "M'enregistrer au poste d2"
    fits(page)
    audit(page, "checkin-fr-phone")
    page.get_by_role("button", name="M'enregistrer au poste d2").click()
    page.wait_for_url("**done=checked_in**")
    assert "Vous êtes enregistré à ce poste." in page.get_by_role("status").inner_text()

    # The live floor, as the manager reads it, has her at d2.
    d2 = live_desk(journey, staff, "d2", lambda desk: desk["member"] == "Ada Lovelace")
    assert (d2["member"], d2["state"]) == ("Ada Lovelace", "booked")

    # Her bookings, at both sizes; the plan and the check-in at desktop size.
    page.goto(journey.url("/my/bookings"))
    assert page.get_by_role("button", name="Annuler").count() == 1
    fits(page)
    audit(page, "bookings-fr-phone")
    the_other_sizes(journey, browse, audit, path)
    assert offline.blocked == []


def live_desk(journey: Journey, staff: Page, slug: str, wanted: Callable[[dict[str, Any]], bool]):
    """Desk `slug` in `/live/state` as `staff` reads it, once `wanted` (or after 2 s)."""
    deadline = time.monotonic() + 2
    while True:
        state = staff.request.get(journey.url("/live/state")).json()
        desk = next(d for s in state["sites"] for d in s["desks"] if d["desk"] == slug)
        if wanted(desk) or time.monotonic() > deadline:
            return desk
        time.sleep(0.05)


def the_other_sizes(journey: Journey, browse, audit, checkin: str) -> None:
    """The pages the journey read at one size, read and audited at the other."""
    wide = browse("desktop", locale="fr-FR")
    journey.sign_in(wide, ADA)
    wide.goto(journey.url("/my/bookings"))
    audit(wide, "bookings-fr-desktop")
    wide.goto(journey.url("/my/book"))
    assert wide.locator(".desk-yours", has_text="d2").is_visible()
    audit(wide, "book-fr-desktop")
    wide.goto(journey.url(checkin))
    audit(wide, "checkin-fr-desktop")
    phone_staff = browse("phone", locale="fr-FR")
    journey.sign_in(phone_staff, MANAGER)
    phone_staff.goto(journey.url("/manage/desks/qr"))
    fits(phone_staff)
    audit(phone_staff, "desk-qr-sheet-fr-phone")
