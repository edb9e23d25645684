"""The agent's durable outbox: every event is stored here before it is sent, and leaves only
when the server's `ack` says it is stored.

SQLite in WAL mode with `synchronous=FULL`: an event that `append` returned for
survives the agent being killed and the Pi losing power. The per-agent sequence
number lives in the same database and is assigned in the same transaction as the
event, so it grows by one per event across restarts, with no gaps.

When full (`capacity` events waiting, the server unreachable for days), new events
are refused rather than old ones evicted: evicting would leave a gap in the
sequence that the server's contiguous ack could never pass. Refusals are counted,
logged by the caller, and reported in the agent's status.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CAPACITY = 500_000
"""About 100 MB of small events: weeks of a busy door cluster with the server down."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('next_seq', 1), ('acked_seq', 0);
"""


class OutboxFull(RuntimeError):  # noqa: N818 - reads as a state, like queue.Full
    """The outbox holds `capacity` events; the new one was refused, nothing else was lost."""


@dataclass(frozen=True, slots=True)
class OutboxItem:
    seq: int
    topic: str
    payload: bytes


class Outbox:
    """A durable FIFO of events keyed by a per-agent sequence number. Thread-safe."""

    def __init__(self, path: Path, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self.path = path
        self.capacity = capacity
        self.refused = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)
        self._depth = self._count()

    def append(self, build: Callable[[int], tuple[str, bytes]]) -> int:
        """Store one event and return its seq.

        `build(seq)` returns the topic and payload for the seq this event gets; it
        runs inside the transaction, so a crash never burns a seq or stores half.
        """
        with self._lock:
            if self._depth >= self.capacity:
                self.refused += 1
                raise OutboxFull(f"outbox holds {self._depth} events (capacity {self.capacity})")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                seq = self._meta("next_seq")
                topic, payload = build(seq)
                self._db.execute(
                    "INSERT INTO outbox (seq, topic, payload) VALUES (?, ?, ?)",
                    (seq, topic, payload),
                )
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'next_seq'", (seq + 1,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth += 1
            return seq

    def pending(self, after: int, limit: int) -> list[OutboxItem]:
        """Up to `limit` waiting events with seq greater than `after`, in seq order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [OutboxItem(seq, topic, bytes(payload)) for seq, topic, payload in rows]

    def ack(self, seq: int) -> int:
        """The server stored everything up to `seq`: forget it. Returns how many left."""
        with self._lock:
            if seq <= self._meta("acked_seq"):
                return 0
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursor = self._db.execute("DELETE FROM outbox WHERE seq <= ?", (seq,))
                self._db.execute("UPDATE meta SET value = ? WHERE key = 'acked_seq'", (seq,))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._depth -= cursor.rowcount
            return cursor.rowcount

    @property
    def depth(self) -> int:
        """Events waiting for the server's ack."""
        return self._depth

    @property
    def acked_seq(self) -> int:
        with self._lock:
            return self._meta("acked_seq")

    @property
    def next_seq(self) -> int:
        with self._lock:
            return self._meta("next_seq")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        value: int = row[0]
        return value

    def _count(self) -> int:
        count: int = self._db.execute("SELECT count(*) FROM outbox").fetchone()[0]
        return count
