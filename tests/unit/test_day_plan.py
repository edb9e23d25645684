"""The day planner (`ruche.sim.day`): deterministic, in seq order, heartbeats as the edge
sends them, and sound on the days the clock changes."""

from __future__ import annotations

import doctest
import itertools
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ruche.broker import Channel, DeskBadge, Presence, PresenceState, Tap, badge_token
from ruche.sim import day as day_module
from ruche.sim.day import (
    AgentTiming,
    DayPlan,
    DaySpec,
    DeskSpot,
    DoorSpot,
    Member,
    PlannedEvent,
    SiteLayout,
    Stay,
    entry_reader,
    exit_reader,
    plan_day,
    plan_days,
)

PARIS = ZoneInfo("Europe/Paris")
KEY = bytes(range(16))
LAYOUT = SiteLayout(
    site="lab",
    timezone="Europe/Paris",
    site_key=KEY,
    doors=(DoorSpot("doors", "front"), DoorSpot("doors", "back")),
    desks=tuple(DeskSpot("desks-a" if i < 5 else "desks-b", f"desk-{i}") for i in range(10)),
)
MEMBERS = [
    *(Member(f"m{i}", bytes([1, i])) for i in range(8)),
    Member("gone", b"\x09\x09", revoked=True),
]
TUESDAY = date(2026, 11, 24)
SPRING_FORWARD = date(2026, 3, 29)
FALL_BACK = date(2026, 10, 25)
MS = timedelta(milliseconds=1)


def plan(day: date = TUESDAY, seed: int = 1, **kwargs: object) -> DayPlan:
    return plan_day(LAYOUT, MEMBERS, day, seed=seed, **kwargs)  # type: ignore[arg-type]


def desk_streams(p: DayPlan) -> dict[str, list[Presence]]:
    """Each desk's presence events in time order."""
    out: dict[str, list[Presence]] = defaultdict(list)
    for _, event in p.timeline():
        if isinstance(event.payload, Presence):
            out[event.topic.device or ""].append(event.payload)
    return out


class TestDeterminism:
    """The same seed gives the same day; another seed another day."""

    def test_same_seed_same_plan(self):
        assert plan(seed=5) == plan(seed=5)

    def test_another_seed_another_plan(self):
        first, second = plan(seed=5), plan(seed=6)
        assert first.events != second.events
        assert first.sessions != second.sessions

    def test_roles(self):
        roles = plan().roles
        counts = {r: sum(1 for v in roles.values() if v == r) for r in set(roles.values())}
        assert counts == {"refused": 1, "no_show": 1, "walk_in": 2, "badge": 3, "booked": 2}
        assert roles["gone"] == "refused"


class TestSeqOrder:
    """Per agent: seq counts up by one in time order, times strictly increase, mono agrees."""

    @settings(max_examples=15, deadline=None)
    @given(
        seed=st.integers(0, 2**32),
        day=st.dates(date(2026, 1, 1), date(2027, 12, 31)),
        first=st.integers(1, 10**9),
    )
    def test_streams(self, seed, day, first):
        p = plan(day, seed, first_seqs={"desks-a": first})
        assert set(p.events) == {"doors", "desks-a", "desks-b"}
        for agent, events in p.events.items():
            payloads = [e.payload for e in events]
            start = first if agent == "desks-a" else 1
            assert [e.seq for e in payloads] == list(range(start, start + len(payloads)))
            for before, after in itertools.pairwise(payloads):
                assert before.ts < after.ts
                elapsed = (after.ts - before.ts).total_seconds()
                assert after.mono - before.mono == pytest.approx(elapsed, abs=0.002)
            for e in events:
                assert p.start <= e.payload.ts < p.end
                assert (e.topic.site, e.topic.agent) == ("lab", agent)
                assert e.payload.ts.utcoffset() == e.payload.ts.astimezone(PARIS).utcoffset()
                assert e.payload.ts.microsecond % 1000 == 0

    def test_timeline_is_every_event_in_time_order(self):
        p = plan()
        timeline = p.timeline()
        assert len(timeline) == p.total == sum(p.points.values())
        assert [e.payload.ts for _, e in timeline] == sorted(e.payload.ts for _, e in timeline)


class TestHeartbeats:
    """Every desk repeats its state every `heartbeat_s`, the schedule restarting at each change."""

    @pytest.mark.parametrize("day", [TUESDAY, SPRING_FORWARD, FALL_BACK])
    @pytest.mark.parametrize("every", [60.0, 300.0])
    def test_spacing(self, day, every):
        p = plan(day, timing=AgentTiming(heartbeat_s=every))
        streams = desk_streams(p)
        assert set(streams) == {d.desk for d in LAYOUT.desks}
        for desk, events in streams.items():
            first = events[0]
            assert (first.heartbeat, first.state) == (True, PresenceState.VACANT), desk
            assert first.ts - p.start <= timedelta(seconds=every)
            assert p.end - events[-1].ts <= timedelta(seconds=every)
            state = PresenceState.VACANT
            for before, after in itertools.pairwise(events):
                gap = after.ts - before.ts
                if after.heartbeat:
                    assert after.state is state, f"{desk} repeats its state"
                    assert abs(gap - timedelta(seconds=every)) <= 3 * MS, f"{desk} at {after.ts}"
                else:
                    assert after.state is not state, f"{desk} changes at {after.ts}"
                    # A heartbeat due a few milliseconds before a change is the change.
                    assert gap <= timedelta(seconds=every) + 50 * MS
                    state = after.state

    def test_a_full_day_of_heartbeats(self):
        p = plan(timing=AgentTiming(heartbeat_s=300))
        beats = sum(1 for _, e in p.timeline() if getattr(e.payload, "heartbeat", False))
        # Ten desks, 288 five-minute slots a day, less the few a change restarts.
        assert 10 * 280 <= beats <= 10 * 288


class TestDaylightSaving:
    """The 23- and 25-hour days: local hours hold, the day's bounds are local midnights."""

    @pytest.mark.parametrize(("day", "hours"), [(SPRING_FORWARD, 23), (FALL_BACK, 25)])
    def test_day_length_and_local_hours(self, day, hours):
        p = plan(day)
        assert p.end - p.start == timedelta(hours=hours)
        assert p.start.astimezone(PARIS) == datetime.combine(day, time(), PARIS)
        first_entry: dict[str, datetime] = {}
        for tap in p.taps:
            event = p.events[tap.agent][tap.seq - 1].payload
            if not tap.exit:
                first_entry.setdefault(tap.member, event.ts)
        for member, at in first_entry.items():
            local = at.astimezone(PARIS)
            assert (8, 0) <= (local.hour, local.minute) <= (11, 0), member
        for visit in p.visits:
            assert visit.end.astimezone(PARIS).hour >= 12 or visit.end - visit.start > timedelta(
                hours=1
            )


class TestExpectations:
    """What the plan expects follows from its own events."""

    def test_sessions_are_bounded_by_their_events(self):
        p = plan()
        changes = {
            (e.topic.agent, e.payload.seq): e
            for events in p.events.values()
            for e in events
            if isinstance(e.payload, Presence) and not e.payload.heartbeat
        }
        for s in p.sessions:
            opened = changes[(s.agent, s.opened_seq)]
            assert opened.topic.device == s.desk
            assert (opened.payload.state, opened.payload.ts) == (PresenceState.OCCUPIED, s.start)
            closing = [
                e
                for e in changes.values()
                if e.topic.device == s.desk and e.payload.ts == s.end and e.topic.agent == s.agent
            ]
            assert [e.payload.state for e in closing] == [PresenceState.VACANT]
        by_desk = defaultdict(list)
        for s in p.sessions:
            by_desk[s.desk].append((s.start, s.end))
        for spans in by_desk.values():
            spans.sort()
            assert all(a[1] < b[0] for a, b in itertools.pairwise(spans))

    def test_attribution_follows_the_roles(self):
        p = plan()
        badges = defaultdict(list)
        for _, e in p.timeline():
            if isinstance(e.payload, DeskBadge):
                badges[e.topic.device].append(e.payload)
        tokens = {badge_token(KEY, m.uid): m.key for m in MEMBERS}
        for s in p.sessions:
            if s.attributed_by == "badge":
                near = [
                    b for b in badges[s.desk] if s.start - timedelta(minutes=10) <= b.ts <= s.end
                ]
                assert [tokens[b.token] for b in near] == [s.member]
                assert p.roles[s.member or ""] == "badge"
            elif s.attributed_by == "booking":
                assert s.booking is not None
                booking = p.bookings[s.booking]
                assert (booking.member, booking.desk) == (s.member, s.desk)
                assert booking.start <= s.start < s.end <= booking.end
                first = min(x.start for x in p.sessions if x.booking == s.booking)
                assert first - booking.start < timedelta(minutes=15), "on time: not a no-show"
            else:
                assert (s.member, s.booking) == (None, None)
                assert not [b for b in p.bookings if b.desk == s.desk]

    def test_no_shows_and_refusals(self):
        p = plan()
        no_show = [b for b in p.bookings if b.no_show]
        assert [p.roles[b.member] for b in no_show] == ["no_show"]
        assert not [s for s in p.sessions if s.desk == no_show[0].desk]
        refused = [t for t in p.taps if t.member == "gone"]
        assert [t.granted for t in refused] == [False, False]
        assert not [v for v in p.visits if v.member in ("gone", no_show[0].member)]

    def test_visits_run_from_entry_to_exit_through_granted_taps(self):
        p = plan()
        taps = {(t.agent, t.seq): t for t in p.taps}
        for visit in p.visits:
            entry = taps[(visit.entry_agent, visit.entry_seq)]
            payload = p.events[entry.agent][entry.seq - 1].payload
            assert isinstance(payload, Tap)
            assert (entry.granted, entry.exit, entry.member) == (True, False, visit.member)
            assert (payload.ts, payload.reader) == (visit.start, entry_reader(entry.door))
            exits = [
                t
                for t in p.taps
                if t.exit and t.member == visit.member
                and p.events[t.agent][t.seq - 1].payload.ts == visit.end
            ]  # fmt: skip
            assert len(exits) == 1
            exit_payload = p.events[exits[0].agent][exits[0].seq - 1].payload
            assert isinstance(exit_payload, Tap)
            assert exit_payload.reader == exit_reader(exits[0].door)

    def test_door_cycles_follow_granted_taps_and_never_overlap(self):
        p = plan()
        door_events = [e for e in p.events["doors"] if e.topic.channel is Channel.DOOR_EVENT]
        granted = [t for t in p.taps if t.granted]
        assert len(door_events) == 2 * len(granted)
        for door in ("front", "back"):
            kinds = [e.payload.kind for e in door_events if e.topic.device == door]  # type: ignore[union-attr]
            assert kinds == ["opened", "closed"] * (len(kinds) // 2)

    def test_points_per_measurement(self):
        p = plan()
        assert p.points["desk_badge"] == sum(
            1 for _, e in p.timeline() if isinstance(e.payload, DeskBadge)
        )
        assert p.points["door_tap"] == len(p.taps)
        assert p.points["door_event"] == 2 * sum(1 for t in p.taps if t.granted)
        assert sum(p.points.values()) == p.total


class TestBadInput:
    """What cannot be planned is refused with a message saying why."""

    def test_more_members_than_desks(self):
        small = SiteLayout(site="lab", timezone="Europe/Paris", site_key=KEY,
                           doors=LAYOUT.doors, desks=LAYOUT.desks[:3])  # fmt: skip
        with pytest.raises(ValueError, match="need a desk each"):
            plan_day(small, MEMBERS, TUESDAY, seed=1)

    def test_too_many_no_shows(self):
        with pytest.raises(ValueError, match="cannot make 5 no-shows and 4 walk-ins"):
            plan(no_shows=5, walk_ins=4)

    @pytest.mark.parametrize(
        ("members", "message"),
        [
            ([Member("a", b"\x01"), Member("a", b"\x02")], "keys must be unique"),
            ([Member("a", b"\x01"), Member("b", b"\x01")], "share a badge"),
            ([Member("a", b"")], "UID is empty"),
        ],
    )
    def test_bad_members(self, members, message):
        with pytest.raises(ValueError, match=message):
            plan_day(LAYOUT, members, TUESDAY, seed=1, no_shows=0, walk_ins=0)

    def test_bad_layout(self):
        with pytest.raises(ValueError, match="unknown timezone"):
            SiteLayout(site="lab", timezone="Mars/Olympus", site_key=KEY, doors=LAYOUT.doors,
                       desks=LAYOUT.desks)  # fmt: skip
        with pytest.raises(ValueError, match="at least 16 bytes"):
            SiteLayout(site="lab", timezone="UTC", site_key=b"short", doors=LAYOUT.doors,
                       desks=LAYOUT.desks)  # fmt: skip
        with pytest.raises(ValueError, match="desk ids must be unique"):
            SiteLayout(site="lab", timezone="UTC", site_key=KEY, doors=LAYOUT.doors,
                       desks=(DeskSpot("a", "d"), DeskSpot("b", "d")))  # fmt: skip

    def test_heartbeat_beyond_the_stale_limit(self):
        with pytest.raises(ValueError, match="heartbeat_s must be 1 to 600"):
            AgentTiming(heartbeat_s=1800)

    def test_first_seq_below_one(self):
        with pytest.raises(ValueError, match="first seq of doors must be 1 or more"):
            plan(first_seqs={"doors": 0})


def test_times_are_aware_and_in_utc():
    p = plan()
    assert {s.start.tzinfo for s in p.sessions} | {s.end.tzinfo for s in p.sessions} == {UTC}
    assert p.start == datetime(2026, 11, 23, 23, tzinfo=UTC)
    assert p.start.utcoffset() == timedelta(hours=1)


def test_doctest():
    result = doctest.testmod(day_module)
    assert result.attempted > 0
    assert result.failed == 0


# --- several days (`plan_days`) ----------------------------------------------------------

WEEKEND = [date(2026, 10, 24), date(2026, 10, 25), date(2026, 10, 26)]
"""Saturday, the 25-hour Sunday, Monday."""
FIVE = MEMBERS[:5]


def weekend(seed: int = 3, **stays: Stay) -> tuple[DayPlan, ...]:
    specs = [
        DaySpec(WEEKEND[0], FIVE[:3], stays={k: v for k, v in stays.items() if k in ("m0",)}),
        DaySpec(WEEKEND[1], FIVE[1:4], stays={k: v for k, v in stays.items() if k == "m3"}),
        DaySpec(WEEKEND[2], MEMBERS, no_shows=1, walk_ins=2),
    ]
    return plan_days(LAYOUT, specs, seed=seed, timing=AgentTiming(heartbeat_s=600))


def stream(plans: tuple[DayPlan, ...], agent: str) -> list[PlannedEvent]:
    return [e for p in plans for e in p.events[agent]]


class TestSeveralDays:
    """Consecutive days as one stream: seqs and heartbeats run on across midnight."""

    def test_one_stream_cut_at_local_midnights(self):
        plans = weekend(m0="late", m3="short")
        assert [p.day for p in plans] == WEEKEND
        assert [p.end - p.start for p in plans] == [timedelta(hours=h) for h in (24, 25, 24)]
        for before, after in itertools.pairwise(plans):
            assert before.end == after.start
        for agent in ("doors", "desks-a", "desks-b"):
            payloads = [e.payload for e in stream(plans, agent)]
            assert [p.seq for p in payloads] == list(range(1, len(payloads) + 1))
            for before, after in itertools.pairwise(payloads):
                assert before.ts < after.ts
                elapsed = (after.ts - before.ts).total_seconds()
                assert after.mono - before.mono == pytest.approx(elapsed, abs=0.002)
        for p in plans:
            assert all(p.start <= e.payload.ts < p.end for _, e in p.timeline())
            assert {(t.agent, t.seq) for t in p.taps} == {
                (a, e.payload.seq) for a, e in p.timeline() if isinstance(e.payload, Tap)
            }
            assert sum(p.points.values()) == p.total

    def test_a_late_stay_ends_after_midnight(self):
        saturday, sunday, _ = weekend(m0="late")
        late = [s for s in saturday.sessions if s.member == "m0"]
        assert late[-1].start < saturday.end <= late[-1].end < sunday.end
        visit = [v for v in saturday.visits if v.member == "m0"][-1]
        assert visit.start < saturday.end <= visit.end
        assert not [v for v in sunday.visits if v.member == "m0"], "the stay is Saturday's"
        # Its exit tap and the desk's vacant event are Sunday's events.
        exits = [t for t in sunday.taps if t.member == "m0"]
        assert [t.exit for t in exits] == [True]
        assert (late[-1].agent, late[-1].desk) in {
            (a, e.topic.device) for a, e in sunday.timeline() if isinstance(e.payload, Presence)
        }
        local = visit.end.astimezone(PARIS)
        assert local.date() == WEEKEND[1]
        assert local.hour < 4

    def test_heartbeats_keep_their_rhythm_across_midnight(self):
        plans = weekend(m0="late")
        every = timedelta(seconds=600)
        desks: dict[str, list[Presence]] = defaultdict(list)
        for p in plans:
            for _, e in p.timeline():
                if isinstance(e.payload, Presence):
                    desks[e.topic.device or ""].append(e.payload)
        late = [s for s in plans[0].sessions if s.member == "m0"][-1]
        for desk, events in desks.items():
            state = PresenceState.VACANT
            for before, after in itertools.pairwise(events):
                if after.heartbeat:
                    assert after.state is state, f"{desk} at {after.ts}"
                    assert abs(after.ts - before.ts - every) <= 3 * MS, f"{desk} at {after.ts}"
                else:
                    state = after.state
            if desk == late.desk:
                night = [e for e in events if late.start < e.ts < late.end]
                assert night
                assert all(e.state is PresenceState.OCCUPIED for e in night)

    def test_a_day_without_late_stays_is_plan_day(self):
        plans = weekend(m3="short")
        for p, spec_members, kwargs in (
            (plans[0], FIVE[:3], {"no_shows": 0, "walk_ins": 0}),
            (plans[2], MEMBERS, {"no_shows": 1, "walk_ins": 2}),
        ):
            alone = plan_day(LAYOUT, spec_members, p.day, seed=3,
                             timing=AgentTiming(heartbeat_s=600), **kwargs)  # fmt: skip
            assert p.roles == alone.roles
            assert p.bookings == alone.bookings
            assert [(v.member, v.start, v.end) for v in p.visits] == [
                (v.member, v.start, v.end) for v in alone.visits
            ]
            assert [(s.desk, s.start, s.end, s.member) for s in p.sessions] == [
                (s.desk, s.start, s.end, s.member) for s in alone.sessions
            ]

    def test_a_short_stay_is_one_sitting(self):
        sunday = weekend(m3="short")[1]
        sittings = [s for s in sunday.sessions if s.member == "m3"]
        visits = [v for v in sunday.visits if v.member == "m3"]
        assert len(sittings) == len(visits) == 1
        assert timedelta(minutes=20) < sittings[0].end - sittings[0].start < timedelta(minutes=102)
        assert visits[0].start < sittings[0].start < sittings[0].end < visits[0].end
        assert visits[0].end.astimezone(PARIS).hour < 18

    def test_stays_are_never_no_shows(self):
        for seed in range(12):
            p = plan_day(LAYOUT, FIVE, TUESDAY, seed=seed, no_shows=3, walk_ins=0,
                         stays={"m0": "short", "m1": "short"})  # fmt: skip
            assert p.roles["m0"] != "no_show"
            assert p.roles["m1"] != "no_show"

    def test_only_some_agents(self):
        p = weekend()[2]
        doors = p.only(["doors"])
        assert set(doors.events) == {"doors"}
        assert doors.events["doors"] == p.events["doors"]
        assert doors.taps == p.taps
        assert doors.total == len(p.events["doors"]) == sum(doors.points.values())
        assert doors.points["presence"] == 0
        assert (doors.sessions, doors.visits) == (p.sessions, p.visits)
        desks = p.only(["desks-a", "desks-b"])
        assert desks.taps == ()
        assert desks.total + doors.total == p.total
        with pytest.raises(ValueError, match=r"no agents \['nope'\]"):
            p.only(["nope"])

    def test_refused(self):
        day = WEEKEND[0]
        with pytest.raises(ValueError, match="plan the next day too"):
            plan_day(LAYOUT, FIVE, day, seed=1, stays={"m0": "late"})
        with pytest.raises(ValueError, match="does not follow"):
            plan_days(LAYOUT, [DaySpec(day, FIVE), DaySpec(day + timedelta(days=2), FIVE)], seed=1)
        with pytest.raises(ValueError, match="at least one day"):
            plan_days(LAYOUT, [], seed=1)
        other = [Member("m0", b"\x07\x07")]
        with pytest.raises(ValueError, match="m0 has one badge"):
            plan_days(LAYOUT, [DaySpec(day, FIVE), DaySpec(day + timedelta(days=1), other)],
                      seed=1)  # fmt: skip
        with pytest.raises(ValueError, match="not among the day's members"):
            plan_day(LAYOUT, FIVE, day, seed=1, stays={"zed": "short"})
        with pytest.raises(ValueError, match="use one of"):
            plan_day(LAYOUT, FIVE, day, seed=1, stays={"m0": "forever"})  # type: ignore[dict-item]
        with pytest.raises(ValueError, match="stay short or late comes"):
            plan_day(LAYOUT, FIVE[:2], day, seed=1, no_shows=1, walk_ins=0,
                     stays={"m0": "short", "m1": "late"})  # fmt: skip
