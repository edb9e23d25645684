"""Signing in, as people do it in Chromium against the running site of journeys.py:
wrong passwords are limited, a one-time link from the real SMTP inbox works once and
expires, a session cookie stops working at sign-out, and a form posted without its CSRF
token is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from journeys import ADA, BOB, BOB_UID, CLEO, Journey
from sqlalchemy import select, update

from ruche.server.storage.enums import BadgeStatus
from ruche.server.storage.models import BadgeRow, OneTimeTokenRow
from ruche.sim.testing.waits import wait_until

pytestmark = pytest.mark.integration

RATE_LIMITED = "Trop de tentatives. Attendez quelques minutes, puis réessayez."
WRONG = "E-mail ou mot de passe incorrect."
EXPIRED = "Ce lien a expiré ou a déjà servi. Demandez-en un nouveau ci-dessous."


def message(page) -> str:
    return page.locator(".message").inner_text()


def test_wrong_passwords_are_limited(journey: Journey, browse) -> None:
    page = browse("phone", locale="fr-FR")
    seen = []
    for _ in range(6):
        journey.sign_in(page, CLEO, password="not her password at all")
        seen.append(message(page))
    assert seen[:5] == [WRONG] * 5
    assert seen[5] == RATE_LIMITED
    # Limited even with the right password now: the account waits out its window.
    journey.sign_in(page, CLEO)
    assert message(page) == RATE_LIMITED
    assert page.get_by_role("button", name="Se déconnecter").count() == 0


def test_a_link_works_once_then_expires(journey: Journey, browse) -> None:
    asking = browse("desktop", locale="fr-FR")
    asking.goto(journey.url("/signin"))
    asking.locator("#link-email").fill(ADA)
    with asking.expect_navigation():
        asking.get_by_role("button", name="Envoyez-moi un lien de connexion").click()
    link = journey.inbox.link_to(ADA)
    first = browse("phone", locale="fr-FR")
    first.goto(journey.url(link))
    assert first.url.endswith("/my/book"), "a member lands on the booking page"
    assert first.get_by_role("button", name="Se déconnecter").is_visible()
    again = browse("phone", locale="fr-FR")
    again.goto(journey.url(link))
    assert "/signin" in again.url
    assert message(again) == EXPIRED
    # A second link, past its 15 minutes (its expiry moved back): refused the same way.
    sent = len(journey.inbox.messages)
    asking.locator("#link-email").fill(ADA)
    with asking.expect_navigation():
        asking.get_by_role("button", name="Envoyez-moi un lien de connexion").click()
    wait_until(lambda: len(journey.inbox.messages) > sent, timeout=5)
    second = journey.inbox.link_to(ADA)
    assert second != link
    with journey.sessions.begin() as session:
        session.execute(update(OneTimeTokenRow).where(OneTimeTokenRow.used_at.is_(None))
                        .values(expires_at=datetime.now(UTC) - timedelta(seconds=1)))  # fmt: skip
    late = browse("phone", locale="fr-FR")
    late.goto(journey.url(second))
    assert message(late) == EXPIRED


def test_a_signed_out_cookie_and_a_form_without_its_token(journey: Journey, browse) -> None:
    page = browse("desktop", locale="en-GB")
    journey.sign_in(page, BOB)
    page.goto(journey.url("/my/badge"))
    assert page.locator("h1").inner_text() == "My badge"
    # A form posted from this session without its token: refused, nothing reported lost.
    with journey.sessions() as session:
        badge = session.scalars(
            select(BadgeRow).where(BadgeRow.token == journey.token(BOB_UID))
        ).one()
    refused = page.request.post(journey.url("/my/badge/lost"), form={"badge_id": str(badge.id)})
    assert refused.status == 403
    with journey.sessions() as session:
        assert session.get(BadgeRow, badge.id).status is BadgeStatus.ACTIVE  # type: ignore[union-attr]
    cookies = page.context.cookies()
    with page.expect_navigation():
        page.get_by_role("button", name="Sign out").click()
    # The old cookie in another browser: the session is over.
    stolen = browse("desktop", locale="en-GB")
    stolen.context.add_cookies(cookies)  # type: ignore[arg-type]
    stolen.goto(journey.url("/my/badge"))
    assert "/signin?next=" in stolen.url
