"""Door visits in SQL: recomputed by `refresh_site` from stored taps and their decisions.

Events are stored as the ingestion stores them (`ingest.event_row` of the decoded wire
message); online decisions are appended to the audit log as the door worker appends them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import (
    DeskBadge,
    OfflineDecision,
    Presence,
    PresenceState,
    Tap,
    Topic,
    badge_token,
    decode,
    encode,
)
from ruche.server import registry
from ruche.server.access import audit
from ruche.server.occupancy.batch import event_row
from ruche.server.occupancy.refresh import refresh_site
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import AuditKind, AuditSource
from ruche.server.storage.models import StoredEventRow, VisitRow

pytestmark = pytest.mark.integration

SITE = "lyon"
AGENT = "pi-1"
DAY = datetime(2026, 11, 23, tzinfo=UTC)
KEY = bytes.fromhex("00112233445566778899aabbccddeeff")
NOW = DAY + timedelta(hours=20)


def at(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


def token(name: str) -> str:
    return badge_token(KEY, name.encode())


@dataclass
class Door:
    """Stores a site's events the way the server does, one agent's seqs counting up."""

    sessions: sessionmaker[Session]
    members: dict[str, int]
    seqs: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def store(self, topic: Topic, payload: object) -> None:
        raw = encode(payload)  # type: ignore[arg-type]
        with transaction(self.sessions) as session:
            session.add(StoredEventRow(**event_row(decode(str(topic), raw), NOW, raw)))

    def tap(self, who: str, when: datetime, *, reader: str = "in") -> int:
        seq = next(self.seqs)
        tap = Tap(seq=seq, ts=when, mono=1.0, token=token(who), reader=reader, request_id="r")
        self.store(Topic.tap(SITE, AGENT, "front"), tap)
        return seq

    def online(self, who: str, seq: int, when: datetime, *, allowed: bool) -> None:
        """The door worker's audit row for its answer to tap `seq`."""
        entry = audit.AuditEntry(
            kind=AuditKind.DECISION,
            source=AuditSource.ONLINE,
            site=SITE,
            agent=AGENT,
            door="front",
            token=token(who),
            member_id=self.members.get(who),
            allowed=allowed,
            reason="schedule" if allowed else "outside_schedule",
            decided_at=when,
            received_at=when,
            agent_seq=seq,
        )
        with transaction(self.sessions) as session:
            audit.append(session, entry)

    def offline(self, who: str, tap_seq: int, when: datetime, *, allowed: bool) -> None:
        """The agent's own decision, taken when the server did not answer in time."""
        decision = OfflineDecision(
            seq=next(self.seqs),
            ts=when,
            mono=1.0,
            token=token(who),
            allowed=allowed,
            reason="allowed" if allowed else "revoked",
            tap_seq=tap_seq,
        )
        self.store(Topic.door_event(SITE, AGENT, "front"), decision)

    def entry(self, who: str, when: datetime) -> int:
        """A granted entry, decided online."""
        seq = self.tap(who, when)
        self.online(who, seq, when, allowed=True)
        return seq

    def exit(self, who: str, when: datetime) -> int:
        seq = self.tap(who, when, reader="front-out")
        self.online(who, seq, when, allowed=True)
        return seq

    def sit(self, who: str, desk: str, start: datetime, end: datetime) -> None:
        """Occupied at `start` with a desk badge check-in, heartbeats, vacant at `end`."""
        topic = Topic.presence(SITE, AGENT, desk)
        occupied, vacant = PresenceState.OCCUPIED, PresenceState.VACANT
        self.store(topic, Presence(seq=next(self.seqs), ts=start, mono=1.0, state=occupied))
        badge = DeskBadge(seq=next(self.seqs), ts=start, mono=1.0, token=token(who))
        self.store(Topic.desk_badge(SITE, AGENT, desk), badge)
        beat = start + timedelta(minutes=5)
        while beat < end:
            heartbeat = Presence(seq=next(self.seqs), ts=beat, mono=1.0, state=occupied,
                                 heartbeat=True)  # fmt: skip
            self.store(topic, heartbeat)
            beat += timedelta(minutes=5)
        self.store(topic, Presence(seq=next(self.seqs), ts=end, mono=1.0, state=vacant))

    def refresh(self) -> int:
        with transaction(self.sessions) as session:
            return refresh_site(session, SITE, now=NOW).visits

    def visits(self) -> list[tuple[object, ...]]:
        with self.sessions() as session:
            rows = session.scalars(select(VisitRow).order_by(VisitRow.start, VisitRow.member_id))
            return [
                (r.site, r.member_id, r.entry_agent, r.entry_seq, r.entries, r.start, r.end,
                 r.closed_by)
                for r in rows
            ]  # fmt: skip


@pytest.fixture(params=["sqlite", "postgres"])
def door(request, tmp_path) -> Iterator[Door]:
    url = (
        f"sqlite:///{tmp_path / 'ruche.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("pg_url")
    )
    run_migrations(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    members: dict[str, int] = {}
    with transaction(sessions) as s:
        key = registry.create_site_key(s, KEY)
        site = registry.create_site(s, slug=SITE, name="Lyon", timezone="Europe/Paris",
                                    key_id=key.id)  # fmt: skip
        agent = registry.create_agent(s, site_id=site.id, slug=AGENT)
        zone = registry.create_zone(s, site_id=site.id, name="open space")
        registry.create_desk(s, zone_id=zone.id, slug="d1", agent_id=agent.id)
        for name in ("ada", "bob", "carol", "eve"):
            member = registry.create_member(s, name=name, email=f"{name}@example.org")
            s.flush()
            registry.enrol_badge(s, member.id, key, name.encode())
            members[name] = member.id
    yield Door(sessions, members)
    engine.dispose()


class TestVisits:
    """Granted entries make visits, closed by an exit, desk evidence or the next entry."""

    def test_a_day_at_the_door(self, door):
        ids = door.members
        first = door.entry("ada", at(8))
        door.entry("ada", at(8, 2))  # a re-tap: the same visit
        door.exit("ada", at(11))
        refused = door.tap("bob", at(8, 30))
        door.online("bob", refused, at(8, 30), allowed=False)
        offline = door.tap("bob", at(9))  # the server did not answer: the agent let him in
        door.offline("bob", offline, at(9), allowed=True)
        late = door.tap("carol", at(9, 30))  # allowed online, too late: the agent had refused
        door.online("carol", late, at(9, 30), allowed=True)
        door.offline("carol", late, at(9, 30), allowed=False)
        eve = door.entry("eve", at(10))  # no exit: her desk session ends the visit
        door.sit("eve", "d1", at(10, 5), at(12, 40))
        door.tap("stranger", at(10))  # no badge holds this token

        assert door.refresh() == 3
        assert door.visits() == [
            (SITE, ids["ada"], AGENT, first, 2, at(8), at(11), "exit"),
            (SITE, ids["bob"], AGENT, offline, 1, at(9), None, "open"),
            (SITE, ids["eve"], AGENT, eve, 1, at(10), at(12, 40), "desk_session"),
        ]

    def test_refreshing_again_changes_nothing(self, door):
        door.entry("ada", at(8))
        door.exit("ada", at(11))
        door.entry("bob", at(9))
        door.refresh()
        first = door.visits()
        assert len(first) == 2
        door.refresh()
        assert door.visits() == first

    def test_late_events_are_taken_in(self, door):
        ids = door.members
        seq = door.entry("ada", at(9))
        undecided = door.tap("bob", at(9, 30))  # its decision has not reached SQL yet
        door.refresh()
        assert door.visits() == [(SITE, ids["ada"], AGENT, seq, 1, at(9), None, "open")]

        door.exit("ada", at(12))  # the exit tap, from an agent that was offline
        door.online("bob", undecided, at(9, 30), allowed=True)
        door.refresh()
        assert door.visits() == [
            (SITE, ids["ada"], AGENT, seq, 1, at(9), at(12), "exit"),
            (SITE, ids["bob"], AGENT, undecided, 1, at(9, 30), None, "open"),
        ]

    def test_a_visit_left_open_ends_after_max_visit(self, door):
        seq = door.entry("ada", at(7))
        door.refresh()
        assert door.visits() == [
            (SITE, door.members["ada"], AGENT, seq, 1, at(7), at(19), "max_visit")
        ]

    def test_refused_entries_make_no_visit(self, door):
        seq = door.tap("ada", at(8))
        door.online("ada", seq, at(8), allowed=False)
        door.exit("ada", at(9))  # an exit with no visit open is ignored
        assert door.refresh() == 0
        assert door.visits() == []
