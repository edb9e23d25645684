"""A manager enrols a badge by tapping it at the door, then reports it lost: in Chromium,
against the running site of journeys.py (the server's workers over Mosquitto, the door
agent with its simulated door and reader). The member pages pass axe and fit a phone."""

from __future__ import annotations

import time

import pytest
from journeys import BOB, DOOR, MANAGER, NEW_UID, Journey
from playwright.sync_api import Page
from sqlalchemy import select

from ruche.server.storage.enums import BadgeStatus
from ruche.server.storage.models import BadgeRow

pytestmark = pytest.mark.integration

LOST_WITHIN_S = 1.0
"""A badge reported lost stops opening the door within this, online and offline."""


def fits(page: Page) -> None:
    width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert width[0] <= width[1], f"{page.url} scrolls sideways: {width}"


def new_badge(journey: Journey) -> BadgeRow | None:
    with journey.sessions() as session:
        return session.scalars(
            select(BadgeRow).where(BadgeRow.token == journey.token(NEW_UID))
        ).one_or_none()


ENROL = "Le prochain badge inconnu à cette porte appartient à Bob Marley"


def enrol_by_tap(journey: Journey, page: Page, audit) -> BadgeRow:
    """On Bob's page: "the next unknown badge at this door is Bob's", then the card at the
    reader; the page's script sees it done. The badge enrolled."""
    page.get_by_label("Porte").select_option(label=DOOR)
    page.get_by_role("button", name=ENROL).click()
    page.wait_for_url("**done=enrolment_open")
    assert "En attente d\u2019un badge à la porte front" in page.inner_text("main")
    audit(page, "members-enrolment-pending-desktop")
    tapped = journey.tap(NEW_UID)
    assert (tapped.allowed, tapped.source, tapped.reason) == (False, "online", "badge_enrolled")
    page.wait_for_url("**done=enrolled", timeout=10_000)
    assert page.get_by_role("status").first.inner_text() == "Le badge a été enregistré."
    badge = new_badge(journey)
    assert badge is not None
    return badge


def test_a_manager_enrols_a_badge_by_tapping_it_then_reports_it_lost(
    journey: Journey, browse, audit
):
    bob = journey.ids["members"][BOB]
    # Before: the card is unknown at the door.
    assert journey.tap(NEW_UID).reason == "unknown_badge"

    page = browse("desktop", locale="en-GB")
    journey.sign_in(page, MANAGER)
    page.goto(journey.url("/manage/members?q=bob"))
    assert page.get_by_role("status").first.inner_text() == "1 membre"
    audit(page, "members-list-desktop")
    page.get_by_role("link", name="Bob Marley").click()
    page.wait_for_url(f"**/manage/members/{bob}")
    assert page.inner_text("h1") == "Bob Marley"

    badge = enrol_by_tap(journey, page, audit)
    assert badge.member_id == bob
    audit(page, "members-enrolled-desktop")

    # The new badge opens the door, online and from the door's cached allow-list.
    assert journey.tap(NEW_UID).allowed
    assert journey.wait_cached(NEW_UID, timeout=3.0), "the allow-list carries the new badge"

    # Reported lost: refused online and offline within a second of the answer.
    name = f"Badge {badge.id}"
    page.get_by_role("button", name=f"Déclarer perdu : {name}").click()
    page.wait_for_url("**done=badge_lost")
    reported = time.monotonic()
    refused = journey.tap(NEW_UID)
    assert (refused.allowed, refused.source) == (False, "online")
    assert refused.reason == "badge_disabled"
    assert journey.wait_cached(NEW_UID, present=False, timeout=LOST_WITHIN_S)
    assert time.monotonic() - reported <= LOST_WITHIN_S + 0.2
    assert journey.offline_verdict(NEW_UID).allowed is False
    assert new_badge(journey).status is BadgeStatus.DISABLED  # type: ignore[union-attr]
    assert "Désactivé (perdu)" in page.inner_text("main")
    audit(page, "members-lost-desktop")

    phone = browse("phone", locale="en-GB")
    journey.sign_in(phone, MANAGER)
    phone.goto(journey.url(f"/manage/members/{bob}"))
    audit(phone, "members-detail-phone")
    fits(phone)
    phone.goto(journey.url("/manage/members/new"))
    audit(phone, "members-new-phone")
    fits(phone)

    # Bob, in English, sees his badges; the lost one offers no "report lost" any more.
    mine = browse("phone", locale="en-GB")
    journey.sign_in(mine, BOB)
    mine.goto(journey.url("/my/badge"))
    assert mine.inner_text("h1") == "My badge"
    assert mine.get_by_role("button", name=f"Report lost: {name}").count() == 0
    assert mine.get_by_role("button", name="Report lost").count() == 1
    audit(mine, "my-badge-phone")
    fits(mine)
