"""The running site every browser journey starts from: people sign in, the door answers
online, and its cached allow-list follows the registry."""

from __future__ import annotations

import pytest
from journeys import ADA_UID, BOB, BOB_UID, NEW_UID, Journey

pytestmark = pytest.mark.integration


def test_a_member_signs_in_and_the_door_knows_the_badges(journey: Journey, browse) -> None:
    page = browse("desktop", locale="en-US")
    journey.sign_in(page, BOB)
    page.goto(journey.url("/signin"))  # any page of the layout shows who is signed in
    assert page.get_by_role("button", name="Sign out").is_visible()
    bob = journey.tap(BOB_UID)
    assert (bob.allowed, bob.source) == (True, "online")
    assert journey.offline_verdict(BOB_UID).allowed, "resident: in the cached list"
    assert not journey.tap(NEW_UID).allowed
    # Ada is on a booking-only plan and has no booking today.
    assert not journey.tap(ADA_UID).allowed
    assert not journey.offline_verdict(ADA_UID).allowed
