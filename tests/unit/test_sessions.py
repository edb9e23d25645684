"""Desk sessions, attribution, door visits, interval helpers and no-shows: pure rules."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruche.broker.payloads import DeskBadge, Presence, PresenceState
from ruche.server.occupancy.sessions import (
    AttributedSession,
    BookingSpan,
    DeskEvent,
    DeskKey,
    DeskSession,
    Direction,
    DoorTap,
    EventKind,
    Interval,
    attribute,
    booked_unused,
    clip_to_local_days,
    derive_desk_sessions,
    derive_visits,
    merge_intervals,
    no_shows,
    reclaims,
    used_unbooked,
)

PROPERTIES = settings(max_examples=300, deadline=None)

PARIS = ZoneInfo("Europe/Paris")
BASE = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday
DESK: DeskKey = ("lyon", "pi-1", "desk-1")
DESK_2: DeskKey = ("lyon", "pi-1", "desk-2")
OTHER_AGENT_DESK: DeskKey = ("lyon", "pi-2", "desk-9")
STALE = timedelta(minutes=15)  # 3 heartbeats of 300 s
STUCK = timedelta(hours=12)
TOKEN_A = "a" * 64
TOKEN_B = "b" * 64
TOKEN_STRANGER = "c" * 64
MEMBERS = {TOKEN_A: 1, TOKEN_B: 2}

KINDS = {
    "O": EventKind.OCCUPIED,
    "V": EventKind.VACANT,
    "HO": EventKind.HEARTBEAT_OCCUPIED,
    "HV": EventKind.HEARTBEAT_VACANT,
}


def at(minutes: float) -> datetime:
    """BASE plus `minutes`."""
    return BASE + timedelta(minutes=minutes)


def events(*spec: tuple[float, str], desk: DeskKey = DESK) -> list[DeskEvent]:
    """Desk events from `(minute, kind)` pairs, seq numbered in the order given."""
    return [DeskEvent(desk, i + 1, at(m), KINDS[k]) for i, (m, k) in enumerate(spec)]


def derive(evts: list[DeskEvent], now_min: float) -> list[DeskSession]:
    return derive_desk_sessions(evts, now=at(now_min), stale_after=STALE, stuck_after=STUCK)


def spans(sessions: list[DeskSession]) -> list[tuple[float, float | None, str, bool]]:
    def minutes(t: datetime) -> float:
        return (t - BASE) / timedelta(minutes=1)

    return [
        (minutes(s.start), None if s.end is None else minutes(s.end), s.closed_by, s.suspect)
        for s in sessions
    ]


def session(start: float, end: float | None, desk: DeskKey = DESK, seq: int = 1) -> DeskSession:
    return DeskSession(
        desk=desk,
        start=at(start),
        end=None if end is None else at(end),
        opened_seq=seq,
        closed_by="open" if end is None else "vacant",
    )


def badge(seq: int, minute: float, token: str, desk: DeskKey = DESK) -> DeskEvent:
    return DeskEvent(desk, seq, at(minute), EventKind.BADGE, token)


def booking(id_: int, start: float, end: float, member: int, desk: DeskKey = DESK) -> BookingSpan:
    return BookingSpan(id=id_, desk=desk, member=member, start=at(start), end=at(end))


class TestDeskEvent:
    """A desk event is built from contract payloads, stores UTC, and refuses bad shapes."""

    @pytest.mark.parametrize(
        ("state", "heartbeat", "kind"),
        [
            (PresenceState.OCCUPIED, False, EventKind.OCCUPIED),
            (PresenceState.VACANT, False, EventKind.VACANT),
            (PresenceState.OCCUPIED, True, EventKind.HEARTBEAT_OCCUPIED),
            (PresenceState.VACANT, True, EventKind.HEARTBEAT_VACANT),
        ],
    )
    def test_from_presence(self, state: PresenceState, heartbeat: bool, kind: EventKind) -> None:
        ts = datetime(2026, 11, 23, 10, 0, tzinfo=PARIS)
        payload = Presence(seq=7, ts=ts, mono=1.0, state=state, heartbeat=heartbeat)
        event = DeskEvent.from_presence("lyon", "pi-1", "desk-1", payload)
        assert event == DeskEvent(DESK, 7, ts, kind)
        assert event.ts.tzinfo is UTC
        assert event.event_id == ("lyon", "pi-1", 7)

    def test_from_badge(self) -> None:
        payload = DeskBadge(seq=3, ts=BASE, mono=1.0, token=TOKEN_A)
        assert DeskEvent.from_badge("lyon", "pi-1", "desk-1", payload) == badge(3, 0, TOKEN_A)

    def test_naive_time_refused(self) -> None:
        with pytest.raises(ValueError, match="timezone-aware"):
            DeskEvent(DESK, 1, datetime(2026, 11, 23, 8, 0), EventKind.OCCUPIED)  # noqa: DTZ001

    @pytest.mark.parametrize(("kind", "token"), [(EventKind.BADGE, None), (EventKind.VACANT, "x")])
    def test_token_only_on_badges(self, kind: EventKind, token: str | None) -> None:
        with pytest.raises(ValueError, match="token"):
            DeskEvent(DESK, 1, BASE, kind, token)


class TestDeriveDeskSessions:
    """Occupied changes, heartbeats, vacancy, quiet sensors and stuck sensors make sessions."""

    @pytest.mark.parametrize(
        ("spec", "now", "expected"),
        [
            pytest.param([(0, "O"), (12, "V")], 60, [(0, 12, "vacant", False)], id="arrive-leave"),
            pytest.param(
                [(0, "O"), (5, "HO"), (10, "HO"), (15, "HO"), (20, "V")],
                60,
                [(0, 20, "vacant", False)],
                id="heartbeats-keep-it-alive",
            ),
            pytest.param(
                [(0, "O"), (5, "HO"), (10, "HO")], 20, [(0, None, "open", False)], id="still-open"
            ),
            pytest.param(
                [(0, "O"), (5, "HO"), (10, "HO")],
                26,
                [(0, 10, "quiet", False)],
                id="quiet-at-the-end-closes-at-last-evidence",
            ),
            pytest.param(
                [(0, "O"), (5, "HO"), (90, "HO"), (95, "V")],
                120,
                [(0, 5, "quiet", False), (90, 95, "vacant", False)],
                id="quiet-gap-splits",
            ),
            pytest.param(
                [(0, "O"), (5, "HO"), (200, "V")],
                300,
                [(0, 5, "quiet", False)],
                id="late-vacant-after-silence-not-billed",
            ),
            pytest.param(
                [(0, "O"), (5, "HO"), (8, "HV")],
                60,
                [(0, 5, "quiet", False)],
                id="missing-vacant-change",
            ),
            pytest.param([(0, "O")], 60, [(0, 0, "quiet", False)], id="lone-occupied"),
            pytest.param([(0, "V"), (5, "HV")], 60, [], id="vacant-only"),
            pytest.param(
                [(0, "HO"), (5, "V")], 60, [(0, 5, "vacant", False)], id="heartbeat-opens"
            ),
            pytest.param(
                [(0, "O"), (3, "O"), (6, "V"), (6, "O"), (9, "V")],
                60,
                [(0, 6, "vacant", False), (6, 9, "vacant", False)],
                id="repeated-occupied-and-same-instant-return",
            ),
            pytest.param(
                [(0, "O"), *[(5 * i, "HO") for i in range(1, 150)], (750, "V")],
                800,
                [(0, 750, "vacant", True)],
                id="stuck-sensor-flagged",
            ),
            pytest.param(
                [(0, "O"), *[(5 * i, "HO") for i in range(1, 146)]],
                730,
                [(0, None, "open", True)],
                id="stuck-open-session-flagged",
            ),
            pytest.param(
                [
                    (950, "O"),
                    (955, "HO"),
                    (960, "HO"),
                    (965, "HO"),
                    (970, "V"),
                ],  # 23:50 to 00:10, Paris
                1100,
                [(950, 970, "vacant", False)],
                id="midnight-crossing",
            ),
        ],
    )
    def test_cases(
        self,
        spec: list[tuple[float, str]],
        now: float,
        expected: list[tuple[float, float | None, str, bool]],
    ) -> None:
        assert spans(derive(events(*spec), now)) == expected

    def test_midnight_crossing_session_splits_into_two_local_days(self) -> None:
        start = datetime(2026, 11, 23, 22, 50, tzinfo=UTC)  # 23:50 in Paris
        evts = [
            DeskEvent(DESK, 1, start, EventKind.OCCUPIED),
            DeskEvent(DESK, 2, start + timedelta(minutes=10), EventKind.HEARTBEAT_OCCUPIED),
            DeskEvent(DESK, 3, start + timedelta(minutes=20), EventKind.VACANT),
        ]
        (only,) = derive_desk_sessions(
            evts, now=start + timedelta(hours=1), stale_after=STALE, stuck_after=STUCK
        )
        assert only.end is not None
        days = [d for d, _, _ in clip_to_local_days((only.start, only.end), PARIS)]
        assert days == [date(2026, 11, 23), date(2026, 11, 24)]

    def test_stuck_reason(self) -> None:
        evts = events((0, "O"), *[(5 * i, "HO") for i in range(1, 150)], (750, "V"))
        (only,) = derive(evts, 800)
        assert only.reason == "stuck_occupied"
        assert derive(events((0, "O"), (5, "V")), 10)[0].reason is None

    def test_desks_are_separate_and_ordered_by_start(self) -> None:
        evts = events((10, "O"), (20, "V")) + events((0, "O"), (30, "V"), desk=OTHER_AGENT_DESK)
        result = derive(evts, 60)
        assert [(s.desk, s.start) for s in result] == [(OTHER_AGENT_DESK, at(0)), (DESK, at(10))]

    def test_badges_are_ignored(self) -> None:
        evts = [*events((0, "O"), (10, "V")), badge(3, 5, TOKEN_A)]
        assert spans(derive(evts, 60)) == [(0, 10, "vacant", False)]

    def test_conflicting_duplicate_is_resolved_by_value(self) -> None:
        one = DeskEvent(DESK, 2, at(10), EventKind.VACANT)
        other = DeskEvent(DESK, 2, at(12), EventKind.VACANT)
        first = derive([*events((0, "O")), one, other], 60)
        second = derive([other, *events((0, "O")), one], 60)
        assert first == second
        assert spans(first) == [(0, 10, "vacant", False)]

    @pytest.mark.parametrize(
        ("stale", "stuck"), [(timedelta(0), STUCK), (STALE, timedelta(seconds=-1))]
    )
    def test_bad_durations_refused(self, stale: timedelta, stuck: timedelta) -> None:
        with pytest.raises(ValueError, match="positive"):
            derive_desk_sessions([], now=BASE, stale_after=stale, stuck_after=stuck)


# --- properties ----------------------------------------------------------------------------

PROPERTY_DESKS = [DESK, DESK_2, OTHER_AGENT_DESK]


@st.composite
def event_sets(draw: st.DrawFn) -> list[DeskEvent]:
    """Events of up to three desks on two agents, seq unique per agent, times in 0..600 min."""
    rows = draw(
        st.lists(
            st.tuples(
                st.sampled_from(PROPERTY_DESKS),
                st.integers(min_value=0, max_value=600),
                st.sampled_from([*KINDS.values(), EventKind.BADGE]),
            ),
            max_size=40,
        )
    )
    seqs: dict[str, int] = {}
    out: list[DeskEvent] = []
    for desk, minute, kind in rows:
        seqs[desk[1]] = seqs.get(desk[1], 0) + 1
        token = TOKEN_A if kind is EventKind.BADGE else None
        out.append(DeskEvent(desk, seqs[desk[1]], at(minute), kind, token))
    return out


NOW_MINUTES = st.integers(min_value=0, max_value=900)
STALE_MINUTES = st.integers(min_value=1, max_value=60)


class TestDeskSessionProperties:
    """Sessions depend only on the set of events, never overlap per desk, nor outgrow the events."""

    @PROPERTIES
    @given(evts=event_sets(), now=NOW_MINUTES, stale=STALE_MINUTES, data=st.data())
    def test_shuffle_and_duplicates_change_nothing(
        self, evts: list[DeskEvent], now: int, stale: int, data: st.DataObject
    ) -> None:
        dupes = data.draw(st.lists(st.sampled_from(evts), max_size=20)) if evts else []
        shuffled = data.draw(st.permutations([*evts, *dupes]))

        def run(xs: list[DeskEvent]) -> list[DeskSession]:
            return derive_desk_sessions(
                xs,
                now=at(now),
                stale_after=timedelta(minutes=stale),
                stuck_after=timedelta(hours=2),
            )

        assert run(shuffled) == run(evts)

    @PROPERTIES
    @given(evts=event_sets(), now=NOW_MINUTES, stale=STALE_MINUTES)
    def test_sessions_of_one_desk_never_overlap(
        self, evts: list[DeskEvent], now: int, stale: int
    ) -> None:
        result = derive_desk_sessions(
            evts, now=at(now), stale_after=timedelta(minutes=stale), stuck_after=STUCK
        )
        for desk in PROPERTY_DESKS:
            mine = [s for s in result if s.desk == desk]
            assert mine == sorted(mine, key=lambda s: s.start)
            for before, after in itertools.pairwise(mine):
                assert before.end is not None, "only a desk's last session may be open"
                assert before.end <= after.start
            for s in mine:
                assert s.end is None or s.start <= s.end

    @PROPERTIES
    @given(evts=event_sets(), now=NOW_MINUTES, stale=STALE_MINUTES)
    def test_total_time_within_the_span_of_the_events(
        self, evts: list[DeskEvent], now: int, stale: int
    ) -> None:
        result = derive_desk_sessions(
            evts, now=at(now), stale_after=timedelta(minutes=stale), stuck_after=STUCK
        )
        for desk in PROPERTY_DESKS:
            times = [e.ts for e in evts if e.desk == desk and e.kind is not EventKind.BADGE]
            mine = [s for s in result if s.desk == desk]
            if not times:
                assert mine == []
                continue
            last = max(times)
            # An open session is counted up to the desk's last event: its evidence so far.
            total = sum(((s.end or last) - s.start for s in mine), timedelta(0))
            assert total <= last - min(times)
            assert all(min(times) <= s.start and (s.end or last) <= last for s in mine)


# --- attribution ---------------------------------------------------------------------------


class TestAttribute:
    """A session goes to the badge at its desk, else the largest overlapping booking, else none."""

    @pytest.mark.parametrize(
        ("sess", "badges", "bookings", "expected"),
        [
            pytest.param(
                session(60, 120),
                [badge(9, 55, TOKEN_A)],
                [booking(1, 0, 240, member=2)],
                (1, "badge", 9, None),
                id="badge-just-before-beats-booking",
            ),
            pytest.param(
                session(60, 120),
                [badge(9, 90, TOKEN_A)],
                [],
                (1, "badge", 9, None),
                id="badge-during",
            ),
            pytest.param(
                session(60, 120),
                [badge(9, 45, TOKEN_A)],
                [booking(1, 0, 240, member=2)],
                (2, "booking", None, 1),
                id="badge-too-early-falls-to-booking",
            ),
            pytest.param(
                session(60, 120),
                [badge(9, 121, TOKEN_A)],
                [],
                (None, "none", None, None),
                id="badge-after-end",
            ),
            pytest.param(
                session(60, None),
                [badge(9, 500, TOKEN_B)],
                [],
                (2, "badge", 9, None),
                id="open-session-any-later-badge",
            ),
            pytest.param(
                session(60, 120),
                [badge(8, 58, TOKEN_STRANGER), badge(9, 70, TOKEN_B), badge(10, 80, TOKEN_A)],
                [],
                (2, "badge", 9, None),
                id="unknown-token-skipped-earliest-known-wins",
            ),
            pytest.param(
                session(60, 120),
                [badge(9, 90, TOKEN_A, desk=DESK_2)],
                [booking(1, 0, 240, member=2, desk=DESK_2)],
                (None, "none", None, None),
                id="other-desk-evidence-ignored",
            ),
            pytest.param(
                session(60, 120),
                [],
                [booking(1, 0, 70, member=1), booking(2, 70, 200, member=2)],
                (2, "booking", None, 2),
                id="largest-overlap-wins",
            ),
            pytest.param(
                session(60, 120),
                [],
                [booking(5, 90, 200, member=2), booking(4, 0, 90, member=1)],
                (1, "booking", None, 4),
                id="tie-to-earlier-booking",
            ),
            pytest.param(
                session(60, None),
                [],
                [booking(1, 0, 70, member=1), booking(2, 70, 200, member=2)],
                (1, "booking", None, 1),
                id="open-session-overlap-up-to-now",
            ),
            pytest.param(
                session(60, 60),
                [],
                [booking(1, 0, 60, member=1), booking(2, 60, 90, member=2)],
                (2, "booking", None, 2),
                id="zero-length-session-in-booking",
            ),
            pytest.param(session(60, 120), [], [], (None, "none", None, None), id="anonymous"),
        ],
    )
    def test_cases(
        self,
        sess: DeskSession,
        badges: list[DeskEvent],
        bookings: list[BookingSpan],
        expected: tuple[int | None, str, int | None, int | None],
    ) -> None:
        (result,) = attribute([sess], badges, bookings, members=MEMBERS, now=at(75))
        assert result.session == sess
        assert (result.member, result.attributed_by, result.badge_seq, result.booking_id) == (
            expected
        )

    def test_order_kept_and_presence_events_ignored(self) -> None:
        sessions = [session(60, 120, desk=DESK_2), session(0, 30)]
        result = attribute(
            sessions,
            [*events((0, "O")), badge(9, 10, TOKEN_A)],
            [],
            members=MEMBERS,
            now=at(200),
        )
        assert [r.session for r in result] == sessions
        assert [r.attributed_by for r in result] == ["none", "badge"]


# --- visits --------------------------------------------------------------------------------

MAX_VISIT = timedelta(hours=10)


def tap(
    seq: int, minute: float, direction: str = "in", *, member: int = 1, ok: bool = True
) -> DoorTap:
    return DoorTap(
        site="lyon",
        agent="door-a",
        seq=seq,
        ts=at(minute),
        member=member,
        direction=Direction(direction),
        allowed=ok,
    )


def member_session(start: float, end: float | None, member: int = 1) -> AttributedSession:
    return AttributedSession(session(start, end), member, "badge", badge_seq=1)


class TestDeriveVisits:
    """Entries open visits, exits close them; with no exit, desk time, next entry or max_visit."""

    @pytest.mark.parametrize(
        ("taps", "sessions", "now", "expected"),
        [
            pytest.param(
                [tap(1, 0), tap(2, 300, "out")], [], 2000, [(0, 300, "exit")], id="entry-exit"
            ),
            pytest.param(
                [tap(1, 0), tap(2, 2), tap(3, 300, "out")],
                [],
                2000,
                [(0, 300, "exit")],
                id="entries-close-together-merge",
            ),
            pytest.param(
                [tap(1, 0), tap(2, 60), tap(3, 300, "out")],
                [],
                2000,
                [(0, 60, "next_entry"), (60, 300, "exit")],
                id="next-entry-ends-visit",
            ),
            pytest.param(
                [tap(1, 0), tap(2, 400)],
                [member_session(10, 200), member_session(220, 250)],
                2000,
                [(0, 250, "desk_session"), (400, 1000, "max_visit")],
                id="desk-session-ends-visit",
            ),
            pytest.param(
                [tap(1, 0), tap(2, 400)],
                [member_session(10, 200, member=2)],
                2000,
                [(0, 400, "next_entry"), (400, 1000, "max_visit")],
                id="other-members-desk-time-ignored",
            ),
            pytest.param(
                [tap(1, 0)],
                [member_session(10, 900)],
                2000,
                [(0, 600, "desk_session")],
                id="desk-session-capped-at-max-visit",
            ),
            pytest.param(
                [tap(1, 0)],
                [member_session(10, None)],
                100,
                [(0, None, "open")],
                id="open-desk-session-keeps-visit-open",
            ),
            pytest.param([tap(1, 0)], [], 100, [(0, None, "open")], id="no-exit-yet"),
            pytest.param([tap(1, 0)], [], 601, [(0, 600, "max_visit")], id="no-exit-ever"),
            pytest.param(
                [tap(1, 0), tap(2, 700)],
                [],
                2000,
                [(0, 600, "max_visit"), (700, 1300, "max_visit")],
                id="next-entry-beyond-max-visit",
            ),
            pytest.param(
                [tap(1, 0, ok=False), tap(2, 10, "out"), tap(3, 20), tap(4, 30, "out", ok=False)],
                [],
                2000,
                [(20, 30, "exit")],
                id="refused-entry-ignored-refused-exit-counts",
            ),
        ],
    )
    def test_cases(
        self,
        taps: list[DoorTap],
        sessions: list[AttributedSession],
        now: float,
        expected: list[tuple[float, float | None, str]],
    ) -> None:
        result = derive_visits(
            taps,
            max_visit=MAX_VISIT,
            now=at(now),
            merge_within=timedelta(minutes=5),
            sessions=sessions,
        )
        got = [
            (
                (v.start - BASE) / timedelta(minutes=1),
                None if v.end is None else (v.end - BASE) / timedelta(minutes=1),
                v.closed_by,
            )
            for v in result
        ]
        assert got == expected

    def test_per_member_and_idempotent(self) -> None:
        taps = [tap(1, 0), tap(2, 5, member=2), tap(3, 60, "out"), tap(4, 90, "out", member=2)]
        result = derive_visits(taps, max_visit=MAX_VISIT, now=at(1000))
        assert [(v.member, v.end) for v in result] == [(1, at(60)), (2, at(90))]
        assert derive_visits([*reversed(taps), *taps], max_visit=MAX_VISIT, now=at(1000)) == result
        assert result[0].entry_seqs == (("door-a", 1),)


# --- interval helpers ----------------------------------------------------------------------


def iv(a: float, b: float) -> Interval:
    return (at(a), at(b))


class TestMergeIntervals:
    """The union of intervals, with gaps shorter than join_gap joined, sorted and disjoint."""

    @pytest.mark.parametrize(
        ("intervals", "gap", "expected"),
        [
            ([], 0, []),
            ([(0, 10), (5, 20)], 0, [(0, 20)]),
            ([(0, 10), (10, 20)], 0, [(0, 20)]),
            ([(0, 10), (15, 20)], 5, [(0, 10), (15, 20)]),
            ([(0, 10), (14, 20)], 5, [(0, 20)]),
            ([(30, 40), (0, 10), (2, 3)], 0, [(0, 10), (30, 40)]),
            ([(5, 5), (7, 6)], 10, []),
        ],
    )
    def test_cases(
        self,
        intervals: list[tuple[float, float]],
        gap: float,
        expected: list[tuple[float, float]],
    ) -> None:
        got = merge_intervals([iv(a, b) for a, b in intervals], join_gap=timedelta(minutes=gap))
        assert got == [iv(a, b) for a, b in expected]

    def test_negative_gap_refused(self) -> None:
        with pytest.raises(ValueError, match="join_gap"):
            merge_intervals([], join_gap=timedelta(minutes=-1))

    @PROPERTIES
    @given(
        raw=st.lists(st.tuples(st.integers(0, 500), st.integers(0, 60)), max_size=30),
        gap=st.integers(0, 30),
    )
    def test_sorted_disjoint_exact_union(self, raw: list[tuple[int, int]], gap: int) -> None:
        merged = merge_intervals([iv(a, a + n) for a, n in raw], join_gap=timedelta(minutes=gap))
        for (_, e1), (s2, _) in itertools.pairwise(merged):
            assert s2 > e1
            assert s2 - e1 >= timedelta(minutes=gap)
        # Covers exactly the union plus the joined gaps, minute by minute.
        covered = {m for a, n in raw for m in range(a, a + n)}
        merged_minutes = {
            m
            for s, e in merged
            for m in range(
                int((s - BASE) / timedelta(minutes=1)), int((e - BASE) / timedelta(minutes=1))
            )
        }
        assert covered <= merged_minutes
        for m in merged_minutes - covered:  # every extra minute lies in a gap shorter than gap
            before = max((x for x in covered if x < m), default=None)
            after = min((x for x in covered if x > m), default=None)
            assert before is not None
            assert after is not None
            assert after - before - 1 < gap


# hypothesis bounds datetimes with naive values and attaches the timezone itself.
NAIVE_2026 = datetime(2026, 1, 1)  # noqa: DTZ001
NAIVE_2027 = datetime(2027, 1, 1)  # noqa: DTZ001


class TestClipToLocalDays:
    """An interval splits at the site's local midnights, 23- and 25-hour days included."""

    def test_spring_forward_day_has_23_hours(self) -> None:
        start = datetime(2026, 3, 28, 12, 0, tzinfo=PARIS)
        end = datetime(2026, 3, 30, 12, 0, tzinfo=PARIS)
        pieces = clip_to_local_days((start, end), PARIS)
        assert [(d, e - s) for d, s, e in pieces] == [
            (date(2026, 3, 28), timedelta(hours=12)),
            (date(2026, 3, 29), timedelta(hours=23)),
            (date(2026, 3, 30), timedelta(hours=12)),
        ]

    def test_fall_back_day_has_25_hours(self) -> None:
        start = datetime(2026, 10, 24, 22, 0, tzinfo=PARIS)
        end = datetime(2026, 10, 26, 1, 0, tzinfo=PARIS)
        pieces = clip_to_local_days((start, end), PARIS)
        assert [(d, e - s) for d, s, e in pieces] == [
            (date(2026, 10, 24), timedelta(hours=2)),
            (date(2026, 10, 25), timedelta(hours=25)),
            (date(2026, 10, 26), timedelta(hours=1)),
        ]
        assert all(s.tzinfo is UTC and e.tzinfo is UTC for _, s, e in pieces)

    def test_within_one_day_and_empty(self) -> None:
        start = datetime(2026, 10, 25, 1, 30, tzinfo=PARIS)
        end = datetime(2026, 10, 25, 2, 30, tzinfo=PARIS, fold=1)  # the second 02:30
        assert clip_to_local_days((start, end), PARIS) == [
            (date(2026, 10, 25), start.astimezone(UTC), end.astimezone(UTC))
        ]
        assert (end - start.astimezone(UTC)) == timedelta(hours=2)
        assert clip_to_local_days((end, start), PARIS) == []

    @PROPERTIES
    @given(
        start=st.datetimes(min_value=NAIVE_2026, max_value=NAIVE_2027, timezones=st.just(UTC)),
        length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4)),
        tz=st.sampled_from(
            [PARIS, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"), UTC]
        ),
    )
    def test_pieces_sum_and_stay_in_one_day(
        self, start: datetime, length: timedelta, tz: ZoneInfo
    ) -> None:
        pieces = clip_to_local_days((start, start + length), tz)
        assert sum((e - s for _, s, e in pieces), timedelta(0)) == length
        for day, s, e in pieces:
            assert s < e
            assert s.astimezone(tz).date() == day
            assert (e - timedelta(microseconds=1)).astimezone(tz).date() == day
        assert [d for d, _, _ in pieces] == sorted({d for d, _, _ in pieces})


# --- bookings meet reality -----------------------------------------------------------------


class TestNoShows:
    """A started booking with no presence at its desk by start plus grace is a no-show."""

    @pytest.mark.parametrize(
        ("sessions", "now", "expected"),
        [
            pytest.param([], 75, [1], id="nobody"),
            pytest.param([], 70, [], id="grace-not-over"),
            pytest.param([session(65, 200)], 80, [], id="arrived-within-grace"),
            pytest.param([session(80, 200)], 90, [1], id="arrived-late"),
            pytest.param([session(30, None)], 90, [], id="already-sitting"),
            pytest.param([session(30, 55)], 90, [1], id="left-before-start"),
            pytest.param([session(61, 61)], 90, [], id="zero-length-presence"),
            pytest.param([session(65, 200, desk=DESK_2)], 90, [1], id="other-desk"),
        ],
    )
    def test_cases(self, sessions: list[DeskSession], now: float, expected: list[int]) -> None:
        bookings = [booking(1, 60, 240, member=1)]
        assert no_shows(bookings, sessions, grace_minutes=15, now=at(now)) == expected

    def test_short_booking_judged_at_its_end(self) -> None:
        assert no_shows([booking(1, 60, 65, 1)], [], grace_minutes=15, now=at(66)) == [1]


def someone(
    start: float, end: float | None, member: int | None, desk: DeskKey = DESK
) -> AttributedSession:
    how = "badge" if member is not None else "unattributed"
    return AttributedSession(session(start, end, desk=desk), member, how)  # type: ignore[arg-type]


class TestReclaims:
    """A member released as a no-show who comes to a desk still free gets it back."""

    @pytest.mark.parametrize(
        ("sessions", "held", "now", "expected"),
        [
            pytest.param([], [], 100, [], id="never-came"),
            pytest.param([someone(90, None, None)], [], 100, [1], id="came-late-unnamed"),
            pytest.param([someone(90, None, 1)], [], 100, [1], id="came-late-by-badge"),
            pytest.param([someone(90, None, 2)], [], 100, [], id="someone-else-took-it"),
            pytest.param([someone(90, None, None, desk=DESK_2)], [], 100, [], id="other-desk"),
            pytest.param([someone(90, None, None)], [booking(2, 85, 120, 2)], 100, [],
                         id="booked-by-another-meanwhile"),
            pytest.param([someone(90, None, None)], [booking(2, 30, 60, 2)], 100, [1],
                         id="earlier-booking-irrelevant"),
            pytest.param([someone(90, None, None)], [booking(2, 85, 120, 2, desk=DESK_2)], 100,
                         [1], id="other-desk-booked"),
            pytest.param([someone(90, 95, None)], [], 300, [], id="booking-over"),
            pytest.param([someone(20, 50, None)], [], 100, [], id="left-before-it-started"),
        ],
    )  # fmt: skip
    def test_cases(self, sessions, held, now, expected) -> None:
        released = [booking(1, 60, 240, member=1)]
        assert reclaims(released, held, sessions, now=at(now)) == expected


class TestBookingViews:
    """Booked-but-unused bookings and used-but-unbooked sessions are listed."""

    def test_booked_unused(self) -> None:
        bookings = [
            booking(1, 0, 60, 1),
            booking(2, 100, 160, 1),
            booking(3, 0, 60, 2, desk=DESK_2),
            booking(4, 500, 560, 1),  # not started
        ]
        sessions = [session(110, 120), session(70, 80, desk=DESK_2)]
        assert booked_unused(bookings, sessions, now=at(200)) == [1, 3]

    def test_used_unbooked(self) -> None:
        bookings = [booking(1, 0, 60, 1)]
        inside = session(10, 20)
        outside = session(70, 80)
        elsewhere = session(10, 20, desk=DESK_2)
        assert used_unbooked([inside, outside, elsewhere], bookings, now=at(200)) == [
            outside,
            elsewhere,
        ]
