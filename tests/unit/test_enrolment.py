"""Enrolment by tap, the pure rules: which taps may fill an enrolment, which enrolment
one fills, and where an enrolment stands."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ruche.server.access.enrolment import (
    ENROLMENT_WINDOW,
    EnrolmentState,
    OpenEnrolment,
    enrolment_state,
    enrolment_to_fill,
    fills_enrolment,
)
from ruche.server.access.rules import ALLOW_REASONS, DecisionReason

NOW = datetime(2026, 12, 8, 9, 30, tzinfo=UTC)


def opened(id_: int, member: int, ago: timedelta, *, done: bool = False) -> OpenEnrolment:
    requested = NOW - ago
    return OpenEnrolment(
        id=id_,
        member_id=member,
        requested_at=requested,
        expires_at=requested + ENROLMENT_WINDOW,
        done_at=requested + timedelta(seconds=5) if done else None,
    )


class TestWhichTapsEnrol:
    """Only a badge the registry does not know fills an enrolment."""

    def test_an_unknown_badge_does(self):
        assert fills_enrolment(DecisionReason.UNKNOWN_BADGE)

    @pytest.mark.parametrize(
        "reason", [r for r in DecisionReason if r is not DecisionReason.UNKNOWN_BADGE]
    )
    def test_a_known_badge_never_does(self, reason):
        # A revoked or disabled card, or a member's refused for a right, stays theirs.
        assert not fills_enrolment(reason)

    def test_no_allowed_tap_does(self):
        assert not any(fills_enrolment(reason) for reason in ALLOW_REASONS)


class TestWhichEnrolmentATapFills:
    """The oldest request still pending; never a done or an expired one."""

    def test_none_waiting(self):
        assert enrolment_to_fill([], NOW) is None

    def test_the_one_pending(self):
        ada = opened(1, member=10, ago=timedelta(seconds=30))
        assert enrolment_to_fill([ada], NOW) == ada

    def test_the_oldest_request_first(self):
        first = opened(7, member=10, ago=timedelta(seconds=50))
        second = opened(3, member=11, ago=timedelta(seconds=20))
        assert enrolment_to_fill([second, first], NOW) == first

    def test_the_same_instant_goes_by_id(self):
        a = opened(4, member=10, ago=timedelta(seconds=20))
        b = opened(2, member=11, ago=timedelta(seconds=20))
        assert enrolment_to_fill([a, b], NOW) == b

    def test_done_and_expired_ones_are_passed_over(self):
        done = opened(1, member=10, ago=timedelta(seconds=60), done=True)
        expired = opened(2, member=11, ago=ENROLMENT_WINDOW)
        waiting = opened(3, member=12, ago=timedelta(seconds=10))
        assert enrolment_to_fill([done, expired], NOW) is None
        assert enrolment_to_fill([done, expired, waiting], NOW) == waiting

    def test_it_expires_at_its_end_not_after(self):
        ada = opened(1, member=10, ago=timedelta(0))
        assert enrolment_to_fill([ada], ada.expires_at - timedelta(microseconds=1)) == ada
        assert enrolment_to_fill([ada], ada.expires_at) is None


class TestWhereAnEnrolmentStands:
    """Pending until it expires; done once filled, whatever the time."""

    def test_pending_then_expired(self):
        expires = NOW + timedelta(minutes=2)
        assert enrolment_state(None, expires, NOW) is EnrolmentState.PENDING
        assert enrolment_state(None, expires, expires) is EnrolmentState.EXPIRED

    def test_done_stays_done(self):
        expires = NOW + timedelta(minutes=2)
        later = expires + timedelta(hours=1)
        assert enrolment_state(NOW, expires, later) is EnrolmentState.DONE
