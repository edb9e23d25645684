"""The hash-chained audit log on real SQLite and PostgreSQL databases, migrated to head."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from ruche.server.access import audit
from ruche.server.access.audit import AuditEntry
from ruche.server.errors import Invalid
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import AuditKind, AuditSource
from ruche.server.storage.models import GENESIS_HASH

pytestmark = pytest.mark.integration

T0 = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
TOKEN = "ab" * 32


@pytest.fixture
def sessions(db_url):
    run_migrations(db_url)
    engine = make_engine(db_url)
    yield make_sessions(engine)
    engine.dispose()


def decision(n: int, **changes) -> AuditEntry:
    fields = {
        "kind": AuditKind.DECISION,
        "source": AuditSource.ONLINE,
        "site": "lyon",
        "agent": "pi-1",
        "door": "front" if n % 2 else "back",
        "token": TOKEN,
        "member_id": 1 + n % 3,
        "allowed": n % 4 != 0,
        "reason": "ok" if n % 4 else "outside_schedule",
        "agent_seq": n,
        "decided_at": T0 + timedelta(minutes=n),
        "received_at": T0 + timedelta(minutes=n, milliseconds=3),
    }
    return AuditEntry(**(fields | changes))


def fill(sessions, count: int) -> None:
    for n in range(1, count + 1):
        with transaction(sessions) as s:
            audit.append(s, decision(n))


class TestAppend:
    """Appends extend one gapless chain that verifies, whatever the kind of entry."""

    def test_chain_verifies(self, sessions):
        with transaction(sessions) as s:
            assert audit.verify(s) == audit.VerifyResult(ok=True, checked=0)
            first = audit.append(s, decision(1))
            assert (first.id, first.prev_hash) == (1, GENESIS_HASH)
        for n in range(2, 8):
            with transaction(sessions) as s:
                audit.append(s, decision(n, source=AuditSource.OFFLINE))
        with transaction(sessions) as s:
            audit.append(
                s,
                AuditEntry(
                    kind=AuditKind.REMOTE_UNLOCK,
                    source=AuditSource.API,
                    site="lyon",
                    door="front",
                    actor="admin key 'root'",
                    decided_at=T0,
                    received_at=T0,
                ),
            )
            audit.append(
                s,
                AuditEntry(
                    kind=AuditKind.ALARM,
                    source=AuditSource.AGENT,
                    site="lyon",
                    agent="pi-1",
                    door="front",
                    reason="forced",
                    agent_seq=100,
                    decided_at=T0,
                    received_at=T0,
                ),
            )
        with transaction(sessions) as s:
            result = audit.verify(s, batch=3)
        assert result == audit.VerifyResult(ok=True, checked=9)

    def test_redelivered_agent_event_is_logged_once(self, sessions):
        with transaction(sessions) as s:
            first = audit.append(s, decision(5, source=AuditSource.OFFLINE))
        with transaction(sessions) as s:
            again = audit.append(s, decision(5, source=AuditSource.OFFLINE))
            assert again.id == first.id
            assert audit.append(s, decision(5, agent="pi-2")).id == 2
            assert audit.verify(s).checked == 2

    def test_refuses_naive_times_and_undecided_decisions(self):
        with pytest.raises(Invalid, match="timezone"):
            decision(1, decided_at=datetime(2025, 1, 1))  # noqa: DTZ001
        with pytest.raises(Invalid, match="allowed"):
            decision(1, allowed=None)

    def test_round_trip_keeps_every_field(self, sessions):
        entry = decision(3, source=AuditSource.OFFLINE, reason="badge_revoked")
        with transaction(sessions) as s:
            audit.append(s, entry)
        with transaction(sessions) as s:
            (row,) = audit.query(s).rows
            s.expire_all()
            stored = {name: getattr(row, name) for name in vars(entry)}
        assert stored == vars(entry)
        assert row.decided_at.tzinfo is UTC


class TestConcurrentAppends:
    """Writers in several threads never fork the chain."""

    def test_threads(self, sessions):
        threads, each = 4, 10
        barrier = threading.Barrier(threads)
        errors: list[BaseException] = []

        def writer(w: int) -> None:
            barrier.wait()
            try:
                for n in range(each):
                    with transaction(sessions) as s:
                        audit.append(s, decision(w * 1000 + n + 1))
            except BaseException as exc:  # noqa: BLE001 - reported by the main thread
                errors.append(exc)

        workers = [threading.Thread(target=writer, args=(w,)) for w in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(60)
        assert errors == []
        with transaction(sessions) as s:
            assert audit.verify(s) == audit.VerifyResult(ok=True, checked=threads * each)


class TestQuery:
    """Queries filter by member, door and time, newest first, a page at a time."""

    def test_filters_and_pages(self, sessions):
        fill(sessions, 12)
        with transaction(sessions) as s:
            page = audit.query(s, member_id=1, limit=2)
            assert [r.id for r in page.rows] == [12, 9]
            page = audit.query(s, member_id=1, limit=2, cursor=page.next_cursor)
            assert [r.id for r in page.rows] == [6, 3]
            assert page.next_cursor is None
            doors = audit.query(
                s,
                site="lyon",
                door="front",
                since=T0 + timedelta(minutes=3),
                until=T0 + timedelta(minutes=8),
            )
            assert [r.id for r in doors.rows] == [7, 5, 3]
            assert audit.query(s, door="side").rows == []
            with pytest.raises(Invalid):
                audit.query(s, limit=0)

    def test_walks_everything(self, sessions):
        fill(sessions, 7)
        seen: list[int] = []
        cursor = None
        with transaction(sessions) as s:
            while True:
                page = audit.query(s, limit=3, cursor=cursor)
                seen += [r.id for r in page.rows]
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor
        assert seen == [7, 6, 5, 4, 3, 2, 1]


class TestTampering:
    """An edited, deleted or re-hashed row breaks the chain, and verify names it."""

    @pytest.mark.parametrize(
        ("statement", "bad_id", "problem"),
        [
            ("UPDATE audit_log SET allowed = NOT allowed WHERE id = 4", 4, "altered"),
            ("UPDATE audit_log SET reason = 'ok' WHERE id = 4", 4, "altered"),
            ("UPDATE audit_log SET member_id = 99 WHERE id = 2", 2, "altered"),
            ("UPDATE audit_log SET hash = 'g' || substr(hash, 2) WHERE id = 6", 6, "altered"),
            ("DELETE FROM audit_log WHERE id = 5", 5, "missing"),
            ("DELETE FROM audit_log WHERE id = 1", 1, "missing"),
            ("DELETE FROM audit_log WHERE id = 8", 8, "missing"),
            ("DELETE FROM audit_log WHERE id >= 7", 7, "missing"),
            ("UPDATE audit_head SET hash = (SELECT hash FROM audit_log WHERE id = 7)", 8, "head"),
        ],
    )
    def test_raw_sql(self, sessions, statement, bad_id, problem):
        fill(sessions, 8)
        with transaction(sessions) as s:
            s.execute(text(statement))
        with transaction(sessions) as s:
            result = audit.verify(s, batch=3)
        assert not result.ok
        assert result.bad_id == bad_id
        assert result.problem is not None
        assert problem in result.problem

    def test_edited_timestamp(self, sessions):
        fill(sessions, 5)
        with transaction(sessions) as s:
            row = audit.query(s, limit=1, cursor=4).rows[0]
            row.decided_at += timedelta(hours=1)
        with transaction(sessions) as s:
            result = audit.verify(s)
        assert (result.ok, result.bad_id) == (False, 3)

    def test_rehashed_row_breaks_the_next(self, sessions):
        fill(sessions, 5)
        with transaction(sessions) as s:
            row = audit.query(s, limit=1, cursor=4).rows[0]
            row.allowed = not row.allowed
            row.hash = audit.chain_hash(audit.hashed_fields(row))
        with transaction(sessions) as s:
            result = audit.verify(s)
        assert (result.ok, result.bad_id) == (False, 4)
        assert result.problem is not None
        assert "does not follow" in result.problem
