"""Event ingestion: agents' events in, stored once in SQL, acked to the agent after the commit.

Workers share the load through a shared subscription (`$share/ruche-ingest/...`), so
several processes can run against one PostgreSQL. paho's manual ack holds the broker's
PUBACK until the batch is committed, and each agent's `ack` says the highest seq up to
which every one of its events is stored. Whichever process dies, nothing is lost (the
agent resends what is not acked, the broker what is not PUBACKed) and nothing is
counted twice (events are keyed by (site, agent, seq)).

Bad messages (not the contract) are counted by reason, logged, and acknowledged to the
broker so they are not redelivered forever. InfluxDB points are written to the
writer's durable spool before the SQL commit, so a crash between the two means a
redelivery (and the same points rewritten), never a point missing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import paho.mqtt.client as mqtt
from sqlalchemy import Table, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import (
    EVENT_CHANNELS,
    Ack,
    ContractError,
    Message,
    PresenceState,
    Topic,
    decode,
    encode,
    shared,
    topic_filter,
)
from ruche.server.connection import MqttOptions, ServerConnection
from ruche.server.models import AgentProgress, OccupancyDirty, StoredEvent

log = logging.getLogger(__name__)

BATCH_MAX = 500
"""Messages per commit; kept under Mosquitto's max_inflight_messages (1000) because
messages awaiting our manual ack count against it."""
BATCH_WAIT_S = 0.02
"""How long a batch waits for more messages before it is committed."""


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    acks_sent: int = 0
    batches: int = 0
    commit_failures: int = 0
    bad: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Arrival:
    msg: mqtt.MQTTMessage
    message: Message | None
    received_at: datetime


def event_row(message: Message, received_at: datetime, raw: bytes | bytearray) -> dict[str, object]:
    """The `events` row of one decoded agent event."""
    payload = message.payload
    state = getattr(payload, "state", None)
    kind = state.value if isinstance(state, PresenceState) else getattr(payload, "kind", None)
    return {
        "site": message.topic.site,
        "agent": message.topic.agent,
        "seq": payload.seq,  # type: ignore[union-attr]
        "channel": message.topic.channel.value,
        "device": message.topic.device or "",
        "kind": kind or message.topic.channel.value,
        "ts": payload.ts,  # type: ignore[union-attr]
        "received_at": received_at,
        "payload": raw.decode(),
    }


class IngestWorker:
    """Consumes every agent event (or one site's), stores it once, and acks it."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        mqtt_options: MqttOptions,
        *,
        group: str = "ruche-ingest",
        site: str = "+",
        before_commit: Callable[[list[Message]], None] | None = None,
        after_commit: Callable[[list[Message]], None] | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`before_commit` receives each batch's valid events before they are committed,
        to make them durable elsewhere too (the InfluxDB spool); if it raises, the batch
        is retried and nothing is acked. `after_commit` receives them once stored (the
        live floor); it must not raise."""
        self.sessions = sessions
        self._after_commit = after_commit
        self.stats = IngestStats()
        self._before_commit = before_commit
        self._clock = clock
        self._inbox: queue.SimpleQueue[_Arrival | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        filters = [shared(group, topic_filter(c, site=site)) for c in sorted(EVENT_CHANNELS)]
        self.connection = ServerConnection(
            mqtt_options,
            name="ruche-ingest",
            subscriptions=[(f, 1) for f in filters],
            handler=self._on_message,
            manual_ack=True,
        )

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._loop, name="ingest", daemon=True)
        self._thread.start()
        try:
            self.connection.start(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop taking messages; what was received is committed and acked first."""
        self._inbox.put(None)
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        self.connection.stop()

    # --- paho's thread ------------------------------------------------------------

    def _on_message(self, _client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        try:
            message: Message | None = decode(msg.topic, msg.payload)
        except ContractError as exc:
            reason = exc.reason.value
            self.stats.bad[reason] = self.stats.bad.get(reason, 0) + 1
            log.warning("bad event on %s refused (%s): %s", msg.topic, reason, exc.detail)
            message = None
        self._inbox.put(_Arrival(msg, message, self._clock()))

    # --- the writer ---------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            first = self._inbox.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + BATCH_WAIT_S
            stopping = False
            while len(batch) < BATCH_MAX:
                try:
                    item = self._inbox.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._commit_with_retry(batch)
            if stopping:
                return

    def _commit_with_retry(self, batch: list[_Arrival]) -> None:
        delay = 0.5
        while True:
            try:
                self._commit(batch)
            except Exception:
                # The database is down or busy: keep the batch (the broker still holds it
                # unacknowledged) and try again; never drop it.
                self.stats.commit_failures += 1
                log.exception("storing %d events failed; retrying in %.1f s", len(batch), delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
            else:
                return

    def _commit(self, batch: list[_Arrival]) -> None:
        good = [a for a in batch if a.message is not None]
        rows = [event_row(a.message, a.received_at, a.msg.payload) for a in good if a.message]
        progress: dict[tuple[str, str], int] = {}
        if self._before_commit is not None and good:
            self._before_commit([a.message for a in good if a.message is not None])
        with self.sessions.begin() as session:
            inserted = _insert_new(session, rows)
            _mark_dirty(session, rows)
            agents = {(str(r["site"]), str(r["agent"])) for r in rows}
            progress = _advance_all(session, agents, self._clock())
        self.stats.received += len(batch)
        self.stats.stored += inserted
        self.stats.duplicates += len(rows) - inserted
        self.stats.batches += 1
        # Durable now: tell the agents, then release the broker's copies.
        for (site, agent), seq in progress.items():
            self.connection.publish(str(Topic.ack(site, agent)), encode(Ack(seq=seq)))
            self.stats.acks_sent += 1
        self.connection.ack_all([arrival.msg for arrival in batch])
        if self._after_commit is not None and good:
            try:
                self._after_commit([a.message for a in good if a.message is not None])
            except Exception:
                log.exception("after-commit hook failed (the events are stored and acked)")


_EVENTS = cast(Table, StoredEvent.__table__)
_PROGRESS = cast(Table, AgentProgress.__table__)
SCAN_WINDOW = 10_000
"""Seqs above an agent's mark looked at per query: bounds the work an agent's long gap costs."""


_COLUMNS = ("site", "agent", "seq", "channel", "device", "kind", "ts", "received_at", "payload")
_INSERT_SQL = {
    # Straight to the driver: at thousands of events a second SQLAlchemy's per-row
    # parameter processing cost as much as the insert itself.
    "sqlite": "INSERT OR IGNORE INTO events"
    " (site, agent, seq, channel, device, kind, ts, received_at, payload)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
    "postgresql": "INSERT INTO events"
    " (site, agent, seq, channel, device, kind, ts, received_at, payload)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
}


def _sqlite_time(moment: object) -> object:
    """A datetime as `UTCDateTime` stores it on SQLite: naive UTC text, microseconds always."""
    if not isinstance(moment, datetime):
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _insert_new(session: Session, rows: list[dict[str, object]]) -> int:
    """Insert the rows not already stored; return how many were new."""
    if not rows:
        return 0
    # Several copies of one event can share a batch (an outbox resend and the request).
    unique = list({(r["site"], r["agent"], r["seq"]): r for r in rows}.values())
    dialect = session.get_bind().dialect.name
    if dialect == "sqlite":
        params = [
            tuple(_sqlite_time(r[c]) if c in {"ts", "received_at"} else r[c] for c in _COLUMNS)
            for r in unique
        ]
    else:
        params = [tuple(r[c] for c in _COLUMNS) for r in unique]
    result = session.connection().exec_driver_sql(_INSERT_SQL[dialect], params)
    # executemany's rowcount is the sum of rows inserted, conflicts excluded.
    return int(result.rowcount)


_DIRTY = cast(Table, OccupancyDirty.__table__)


def _upsert_for(session: Session) -> Callable[[Table], Any]:
    """The dialect's INSERT, the one with ON CONFLICT clauses."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _mark_dirty(session: Session, rows: list[dict[str, object]]) -> None:
    """Lower each site's occupancy mark to the earliest event time of the batch (see
    `OccupancyDirty`), in the batch's transaction."""
    earliest: dict[str, datetime] = {}
    for row in rows:
        site, ts = str(row["site"]), row["ts"]
        if isinstance(ts, datetime) and (site not in earliest or ts < earliest[site]):
            earliest[site] = ts
    if not earliest:
        return
    insert = _upsert_for(session)
    statement = insert(_DIRTY)
    statement = statement.on_conflict_do_update(
        index_elements=[_DIRTY.c.site],
        set_={
            "since": case(
                (statement.excluded.since < _DIRTY.c.since, statement.excluded.since),
                else_=_DIRTY.c.since,
            ),
            "version": _DIRTY.c.version + 1,
        },
    )
    for site, since in sorted(earliest.items()):
        session.execute(statement, {"site": site, "since": since, "version": 1})


def _advance_all(
    session: Session, agents: Iterable[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], int]:
    """Move each agent's contiguous mark over every event stored since; return the marks.

    The agents' progress rows are locked (in a fixed order, so two workers never
    deadlock) before the events above their marks are read: a worker that committed
    the events in a gap is seen by whichever worker commits after it.
    """
    by_site: dict[str, list[str]] = {}
    for site, agent in sorted(set(agents)):
        by_site.setdefault(site, []).append(agent)
    marks: dict[tuple[str, str], int] = {}
    for site, names in by_site.items():
        marks.update(_advance_site(session, site, names, now))
    return marks


def _advance_site(
    session: Session, site: str, agents: list[str], now: datetime
) -> dict[tuple[str, str], int]:
    insert = _upsert_for(session)
    session.execute(
        insert(_PROGRESS).on_conflict_do_nothing(),
        [{"site": site, "agent": a, "acked_seq": 0, "updated_at": now} for a in agents],
    )
    locked = session.execute(
        select(_PROGRESS.c.agent, _PROGRESS.c.acked_seq)
        .where(_PROGRESS.c.site == site, _PROGRESS.c.agent.in_(agents))
        .order_by(_PROGRESS.c.agent)
        .with_for_update()
    ).all()
    before = {agent: int(mark) for agent, mark in locked}
    marks = dict(before)
    pending = set(agents)
    while pending:
        above: dict[str, list[int]] = {a: [] for a in pending}
        floor = min(marks[a] for a in pending)
        scan = (
            select(_EVENTS.c.agent, _EVENTS.c.seq)
            .where(
                _EVENTS.c.site == site,
                _EVENTS.c.agent.in_(sorted(pending)),
                _EVENTS.c.seq > floor,
                _EVENTS.c.seq <= floor + SCAN_WINDOW,
            )
            .order_by(_EVENTS.c.agent, _EVENTS.c.seq)
        )
        for agent, seq in session.execute(scan):
            above[agent].append(int(seq))
        done = set()
        for agent, seqs in above.items():
            mark = _contiguous(marks[agent], (q for q in seqs if q > marks[agent]))
            # Only an agent whose run reached the window's end may have more to walk over.
            if mark == marks[agent] or mark < floor + SCAN_WINDOW:
                done.add(agent)
            marks[agent] = mark
        pending -= done
    changed = [
        {"site": site, "agent": a, "acked_seq": m, "updated_at": now}
        for a, m in marks.items()
        if m != before[a]
    ]
    if changed:
        session.execute(update(AgentProgress), changed)
    return {(site, agent): mark for agent, mark in marks.items()}


def _contiguous(mark: int, seqs: Iterable[int]) -> int:
    """The highest seq reachable from `mark` one step at a time through `seqs` (sorted)."""
    for seq in seqs:
        if seq != mark + 1:
            break
        mark = seq
    return mark


def stored_count(session: Session) -> int:
    """How many events are stored (tests and benchmarks)."""
    return int(session.scalar(select(func.count()).select_from(StoredEvent)) or 0)
