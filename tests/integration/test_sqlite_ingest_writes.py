"""Ingestion's SQLite writes: events inserted a hundred rows a statement, counted right
across statements and duplicates, and the WAL checkpointed beside the commits."""

from __future__ import annotations

import sqlite3
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from ruche.broker import Presence, PresenceState, Topic, decode, encode
from ruche.server.occupancy.batch import EventBatch
from ruche.server.occupancy.event_store import SQLITE_ROWS_PER_INSERT, store_events, stored_count
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.wal import WalCheckpointer

pytestmark = pytest.mark.integration

START = datetime(2026, 12, 5, 8, tzinfo=UTC)


def batch(seqs: range, *, agent: str = "pi-1") -> EventBatch:
    events = []
    for seq in seqs:
        presence = Presence(seq=seq, ts=START + timedelta(seconds=seq), mono=float(seq),
                            state=PresenceState.OCCUPIED, heartbeat=seq % 2 == 0)  # fmt: skip
        raw = encode(presence)
        message = decode(str(Topic.presence("s", agent, f"d{seq % 7}")), raw)
        events.append((message, START, raw))
    return EventBatch.of(events)


@pytest.fixture
def engine(tmp_path: Path) -> Engine:
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    return make_engine(url, autocheckpoint=False)


class TestChunkedInsert:
    def test_counts_across_statements_and_duplicates(self, engine: Engine) -> None:
        sessions = make_sessions(engine)
        first = range(1, 2 * SQLITE_ROWS_PER_INSERT + 51)  # 250: three statements
        with transaction(sessions) as session:
            assert store_events(session, batch(first)) == len(first)
        # Half already stored, half new, in a batch that spans statements again.
        again = range(SQLITE_ROWS_PER_INSERT + 1, 3 * SQLITE_ROWS_PER_INSERT + 51)
        with transaction(sessions) as session:
            assert store_events(session, batch(again)) == 100
        with sessions() as session:
            assert stored_count(session) == 350
        rows = (
            sqlite3.connect(engine.url.database or "")
            .execute(
                "SELECT seq, device, kind, ts, payload FROM events WHERE seq IN (1, 350)"
                " ORDER BY seq"
            )
            .fetchall()
        )
        assert rows[0][:4] == (1, "d1", "occupied", "2026-12-05 08:00:01.000000")
        assert rows[1][:4] == (350, "d0", "occupied", "2026-12-05 08:05:50.000000")
        assert (
            decode(str(Topic.presence("s", "pi-1", "d0")), rows[1][4].encode()).payload.seq == 350
        )


def wal_bytes(engine: Engine) -> int:
    wal = Path(f"{engine.url.database}-wal")
    return wal.stat().st_size if wal.exists() else 0


class TestWalCheckpointer:
    def test_without_it_the_log_only_grows(self, engine: Engine) -> None:
        """The engine ingestion uses never checkpoints by itself (what the thread is for)."""
        sessions = make_sessions(engine)
        for n in range(30):
            with transaction(sessions) as session:
                store_events(session, batch(range(n * 500 + 1, n * 500 + 501)))
        # Well past SQLite's default 1000 pages (4 MB), at which a commit would checkpoint.
        assert wal_bytes(engine) > 6_000_000

    def test_the_log_stays_small_and_every_event_reaches_the_database(self, engine: Engine) -> None:
        sessions = make_sessions(engine)
        checkpointer = WalCheckpointer(engine, interval=0.02)
        checkpointer.start()
        try:
            sizes = []
            for n in range(30):
                with transaction(sessions) as session:
                    store_events(session, batch(range(n * 500 + 1, n * 500 + 501)))
                time.sleep(0.03)
                sizes.append(wal_bytes(engine))
        finally:
            checkpointer.stop()
        assert checkpointer.failures == 0
        assert checkpointer.checkpoints > 10
        assert checkpointer.pages_copied > 1000
        # Reused from its start once copied: it never holds more than a few batches.
        assert max(sizes) < 3_000_000
        with sessions() as session:
            assert stored_count(session) == 15_000

    def test_a_failing_checkpoint_is_counted_not_raised(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'x.db'}"
        checkpointer = WalCheckpointer(make_engine(url))
        closed = sqlite3.connect(tmp_path / "x.db")
        closed.close()
        checkpointer.checkpoint(closed)  # a closed connection: sqlite3.ProgrammingError
        assert checkpointer.failures == 1
        assert checkpointer.checkpoints == 0
