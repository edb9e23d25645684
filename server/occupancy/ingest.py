"""Event ingestion: agents' events in, stored once in SQL, acked to the agent after the commit.

Workers share the load through a shared subscription (`$share/ruche-ingest/...`), so
several processes can run against one PostgreSQL. paho's manual ack holds the broker's
PUBACK until the batch is committed, and each agent's `ack` says the highest seq up to
which every one of its events is stored. Whichever process dies, nothing is lost (the
agent resends what is not acked, the broker what is not PUBACKed) and nothing is
counted twice (events are keyed by (site, agent, seq)).

Bad messages (not the contract) are counted by reason, logged, and acknowledged to the
broker so they are not redelivered forever. An event for a desk or door the registry
does not give to its agent (`ruche.server.registry.ownership`) is refused and counted too, and
kept by key in `refused_events`: the agent's ack moves past it, so a misconfigured agent
does not resend it forever. Refusals are logged a few a window (`RefusalLog`), however
many arrive. InfluxDB points are written to the
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
    Channel,
    ContractError,
    Message,
    PresenceState,
    Topic,
    decode,
    encode,
    shared,
    topic_filter,
)
from ruche.refusals import RefusalLog
from ruche.server.messaging.connection import MqttOptions, ServerConnection
from ruche.server.registry.ownership import DeviceOwners, Refusal
from ruche.server.storage.models import AgentProgress, OccupancyDirty, RefusedEvent, StoredEvent

log = logging.getLogger(__name__)

BATCH_MAX = 1000
"""Messages per commit: a quarter of Mosquitto's max_inflight_messages (4000), because
messages awaiting our manual ack count against it, so the next batches keep arriving
while one commits. With a window of two batches (1000 and 500) the broker stalled on
every slow commit: 10,000 events/s for 30 s had a lag p99 of 2.3 s, against 0.9-1.5 s."""
BATCH_WAIT_S = 0.02
"""How long a batch waits for more messages before it is committed."""

_COLUMNS = ("site", "agent", "seq", "channel", "device", "kind", "ts", "received_at", "payload")
_Row = tuple[str, str, int, str, str, str, datetime, datetime, str]
"""An `events` row in `_COLUMNS` order."""


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    """Valid events refused for a desk or door their agent does not own."""
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
    """The `events` row of one decoded agent event, as a dict (for `StoredEvent(**row)`)."""
    return dict(zip(_COLUMNS, _row(message, received_at, raw), strict=True))


def _row(message: Message, received_at: datetime, raw: bytes | bytearray) -> _Row:
    topic, payload = message.topic, message.payload
    state = getattr(payload, "state", None)
    kind = state.value if isinstance(state, PresenceState) else getattr(payload, "kind", None)
    channel = topic.channel.value
    return (
        topic.site,
        topic.agent,
        payload.seq,  # type: ignore[union-attr]
        channel,
        topic.device or "",
        kind or channel,
        payload.ts,  # type: ignore[union-attr]
        received_at,
        raw.decode(),
    )


@dataclass(frozen=True, slots=True)
class RefusedRow:
    """A refused event's key, and what it claimed."""

    site: str
    agent: str
    seq: int
    channel: str
    device: str
    reason: str
    received_at: datetime
    detail: str = ""
    """Why, in a sentence for the log (not stored)."""


@dataclass(frozen=True, slots=True)
class EventBatch:
    """A batch of decoded events as the `events` table takes them."""

    rows: list[_Row]
    """One per (site, agent, seq), in `_COLUMNS` order: an outbox resend and the request
    can share a batch."""
    seqs: dict[tuple[str, str], list[int]]
    """Each agent's seqs in the batch, stored and refused, ascending."""
    earliest: dict[str, datetime]
    """Each site's earliest event time in the batch (the occupancy mark, `OccupancyDirty`)."""
    refused: list[RefusedRow] = field(default_factory=list)

    @classmethod
    def of(
        cls,
        events: Iterable[tuple[Message, datetime, bytes | bytearray]],
        refused: Iterable[RefusedRow] = (),
    ) -> EventBatch:
        unique: dict[tuple[str, str, int], _Row] = {}
        earliest: dict[str, datetime] = {}
        for message, received_at, raw in events:
            row = _row(message, received_at, raw)
            site, ts = row[0], row[6]
            unique[site, row[1], row[2]] = row
            if site not in earliest or ts < earliest[site]:
                earliest[site] = ts
        refused_rows = {(r.site, r.agent, r.seq): r for r in refused}
        seqs: dict[tuple[str, str], list[int]] = {}
        for site, agent, seq in unique.keys() | refused_rows.keys():
            seqs.setdefault((site, agent), []).append(seq)
        for agent_seqs in seqs.values():
            agent_seqs.sort()
        return cls(list(unique.values()), seqs, earliest, list(refused_rows.values()))


def store_events(session: Session, batch: EventBatch) -> int:
    """Insert the batch's events not already stored (and its refused events' keys) and
    lower each site's occupancy mark, in the session's transaction; return how many
    events were new."""
    inserted = _insert_new(session, batch.rows)
    if batch.refused:
        insert = _upsert_for(session)
        session.execute(
            insert(_REFUSED).on_conflict_do_nothing(),
            [
                {"site": r.site, "agent": r.agent, "seq": r.seq, "channel": r.channel,
                 "device": r.device, "reason": r.reason, "received_at": r.received_at}
                for r in batch.refused
            ],
        )  # fmt: skip
    _mark_dirty(session, batch.earliest)
    return inserted


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
        owners: DeviceOwners | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`before_commit` receives each batch's valid events before they are committed,
        to make them durable elsewhere too (the InfluxDB spool); if it raises, the batch
        is retried and nothing is acked. `after_commit` receives them once stored (the
        live floor); it must not raise. `owners`: who may report for which device (one
        cache per process is enough; made here when not given)."""
        self.sessions = sessions
        self._after_commit = after_commit
        self._owners = owners or DeviceOwners(sessions)
        self._refusals = RefusalLog(log, "event")
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
        self._refusals.flush()

    # --- paho's thread ------------------------------------------------------------

    def _on_message(self, _client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        try:
            message: Message | None = decode(msg.topic, msg.payload)
        except ContractError as exc:
            self._count_bad(exc.reason.value)
            self._refusals.refused(exc.reason.value, msg.topic, exc.detail)
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

    def _count_bad(self, reason: str) -> None:
        self.stats.bad[reason] = self.stats.bad.get(reason, 0) + 1

    def _commit(self, batch: list[_Arrival]) -> None:
        good: list[tuple[Message, datetime, bytes | bytearray]] = []
        refused: list[RefusedRow] = []
        for arrival in batch:
            message = arrival.message
            if message is None:
                continue
            refusal = self._owners.check(message.topic)
            if refusal is None:
                good.append((message, arrival.received_at, arrival.msg.payload))
            else:
                refused.append(_refused_row(message, refusal, arrival.received_at))
        messages = [message for message, _, _ in good]
        events = EventBatch.of(good, refused)
        if self._before_commit is not None and messages:
            self._before_commit(messages)
        with self.sessions.begin() as session:
            inserted = store_events(session, events)
            progress = _advance_all(session, events.seqs, self._clock())
        self.stats.received += len(batch)
        self.stats.stored += inserted
        self.stats.duplicates += len(messages) - inserted
        self.stats.batches += 1
        self._report_refused(refused)
        # Durable now: tell the agents, then release the broker's copies.
        for (site, agent), seq in progress.items():
            self.connection.publish(str(Topic.ack(site, agent)), encode(Ack(seq=seq)))
            self.stats.acks_sent += 1
        self.connection.ack_all([arrival.msg for arrival in batch])
        if self._after_commit is not None and messages:
            try:
                self._after_commit(messages)
            except Exception:
                log.exception("after-commit hook failed (the events are stored and acked)")

    def _report_refused(self, refused: list[RefusedRow]) -> None:
        """Count and log the batch's refused events once it is committed, so a batch
        retried after a storage failure is not counted twice."""
        self.stats.refused += len(refused)
        for row in refused:
            self._count_bad(row.reason)
            topic = Topic(row.site, row.agent, Channel(row.channel), row.device or None)
            self._refusals.refused(row.reason, str(topic), f"seq {row.seq}: {row.detail}")


def _refused_row(
    message: Message, refusal: tuple[Refusal, str], received_at: datetime
) -> RefusedRow:
    topic, (reason, detail) = message.topic, refusal
    seq = int(message.payload.seq)  # type: ignore[union-attr]
    return RefusedRow(topic.site, topic.agent, seq, topic.channel.value, topic.device or "",
                      reason.value, received_at, detail)  # fmt: skip


_EVENTS = cast(Table, StoredEvent.__table__)
_REFUSED = cast(Table, RefusedEvent.__table__)
_PROGRESS = cast(Table, AgentProgress.__table__)
SCAN_WINDOW = 10_000
"""Seqs above an agent's mark looked at per query: bounds the work an agent's long gap costs."""


_SQLITE_INSERT = (
    "INSERT OR IGNORE INTO events"
    " (site, agent, seq, channel, device, kind, ts, received_at, payload) VALUES "
)
_SQLITE_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
_PG_INSERT = (
    # Straight to the driver: at thousands of events a second SQLAlchemy's per-row
    # parameter processing cost as much as the insert itself.
    "INSERT INTO events (site, agent, seq, channel, device, kind, ts, received_at, payload)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
)


def _sqlite_time(moment: datetime) -> str:
    """A datetime as `UTCDateTime` stores it on SQLite: naive UTC text, microseconds always."""
    text = moment.isoformat(" ", "microseconds")
    if text.endswith("+00:00"):  # already UTC, as agents send it: no conversion needed
        return text[:-6]
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _insert_new(session: Session, rows: list[_Row]) -> int:
    """Insert the rows not already stored; return how many were new."""
    if not rows:
        return 0
    if session.get_bind().dialect.name == "sqlite":
        return _insert_sqlite(session, rows)
    result = session.connection().exec_driver_sql(_PG_INSERT, list(rows))
    # executemany's rowcount is the sum of rows inserted, conflicts excluded.
    return int(result.rowcount)


SQLITE_ROWS_PER_INSERT = 100
"""Rows per multi-row INSERT on SQLite (900 parameters, under SQLite's old limit of 999)."""


def _insert_sqlite(session: Session, rows: list[_Row]) -> int:
    """Insert in statements of many rows: the sqlite3 module releases the GIL around each
    statement step, and executemany steps once a row. With the network thread busy
    decoding, each row then waited for the GIL (up to the 5 ms switch interval) and
    ingestion fell behind for good once it was behind at all; a hundred rows a step
    costs the same alone and waits a hundred times less."""
    connection = session.connection()
    inserted = 0
    for start in range(0, len(rows), SQLITE_ROWS_PER_INSERT):
        chunk = rows[start : start + SQLITE_ROWS_PER_INSERT]
        params = [x for r in chunk for x in (*r[:6], _sqlite_time(r[6]), _sqlite_time(r[7]), r[8])]
        sql = _SQLITE_INSERT + ", ".join([_SQLITE_ROW] * len(chunk))
        inserted += int(connection.exec_driver_sql(sql, tuple(params)).rowcount)
    return inserted


_DIRTY = cast(Table, OccupancyDirty.__table__)


def _upsert_for(session: Session) -> Callable[[Table], Any]:
    """The dialect's INSERT, the one with ON CONFLICT clauses."""
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


def _mark_dirty(session: Session, earliest: dict[str, datetime]) -> None:
    """Lower each site's occupancy mark to the earliest event time of the batch (see
    `OccupancyDirty`), in the batch's transaction."""
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
    session: Session, batch: dict[tuple[str, str], list[int]], now: datetime
) -> dict[tuple[str, str], int]:
    """Move each agent of the batch's contiguous mark over every event stored since (its
    `batch` seqs, just stored, and any other); return the marks.

    The agents' progress rows are locked (in a fixed order, so two workers never
    deadlock) before the events above their marks are read: a worker that committed
    the events in a gap is seen by whichever worker commits after it.
    """
    by_site: dict[str, dict[str, list[int]]] = {}
    for (site, agent), seqs in sorted(batch.items()):
        by_site.setdefault(site, {})[agent] = seqs
    marks: dict[tuple[str, str], int] = {}
    for site, agents in by_site.items():
        marks.update(_advance_site(session, site, agents, now))
    return marks


def _advance_site(
    session: Session, site: str, batch: dict[str, list[int]], now: datetime
) -> dict[tuple[str, str], int]:
    agents = sorted(batch)
    before = _lock_progress(session, site, agents, now)
    # The batch's own seqs first, without reading them back: in the usual case (one
    # worker, events in order) the scan below then finds nothing above the marks.
    marks = {a: _contiguous(before[a], (q for q in batch[a] if q > before[a])) for a in agents}
    pending = set(agents)
    while pending:
        above: dict[str, list[int]] = {a: [] for a in pending}
        for agent, seq in _scan_above(session, site, {a: marks[a] for a in pending}):
            above[agent].append(int(seq))
        done = set()
        for agent, seqs in above.items():
            start = marks[agent]
            marks[agent] = _contiguous(start, seqs)
            # Only an agent whose run reached its window's end may have more to walk over.
            if marks[agent] < start + SCAN_WINDOW:
                done.add(agent)
        pending -= done
    changed = [
        {"site": site, "agent": a, "acked_seq": m, "updated_at": now}
        for a, m in marks.items()
        if m != before[a]
    ]
    if changed:
        session.execute(update(AgentProgress), changed)
    return {(site, agent): mark for agent, mark in marks.items()}


def _scan_above(session: Session, site: str, marks: dict[str, int]) -> Iterable[tuple[str, int]]:
    """(agent, seq) of the stored and refused events above each agent's mark, at most
    SCAN_WINDOW each, by agent then seq: one indexed range per agent and table, in one
    statement."""
    dialect = session.get_bind().dialect.name
    mark = "?" if dialect == "sqlite" else "%s"
    ranges = ", ".join([f"({mark}, CAST({mark} AS BIGINT))"] * len(marks))
    above = (
        " FROM marks JOIN {table} e"
        f" ON e.site = {mark} AND e.agent = marks.agent"
        f" AND e.seq > marks.mark AND e.seq <= marks.mark + {SCAN_WINDOW}"
    )
    sql = (
        f"WITH marks(agent, mark) AS (VALUES {ranges}) "  # noqa: S608 - only placeholders
        "SELECT agent, seq FROM ("
        f"SELECT e.agent, e.seq{above.format(table='events')}"
        f" UNION ALL SELECT e.agent, e.seq{above.format(table='refused_events')}"
        ") AS found ORDER BY agent, seq"
    )
    params = (*(x for agent, seq in sorted(marks.items()) for x in (agent, seq)), site, site)
    return cast(Iterable[tuple[str, int]], session.connection().exec_driver_sql(sql, params))


def _lock_progress(session: Session, site: str, agents: list[str], now: datetime) -> dict[str, int]:
    """Lock the agents' progress rows (made at 0 when new); return their marks."""
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
    return {agent: int(mark) for agent, mark in locked}


def _contiguous(mark: int, seqs: Iterable[int]) -> int:
    """The highest seq reachable from `mark` one step at a time through `seqs` (sorted;
    a seq at or below the mark, stored and refused alike, is passed over)."""
    for seq in seqs:
        if seq <= mark:
            continue
        if seq != mark + 1:
            break
        mark = seq
    return mark


def stored_count(session: Session) -> int:
    """How many events are stored (tests and benchmarks)."""
    return int(session.scalar(select(func.count()).select_from(StoredEvent)) or 0)
