"""Agents' events in SQL, stored once: inserts that skip what is already there (in
statements of a hundred rows on SQLite), each site's occupancy mark lowered to the batch's
earliest event, and each agent's acked seq moved over every event now stored or refused
without a gap, all in the caller's transaction."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import Table, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ruche.broker import Message
from ruche.server.occupancy.batch import EventBatch, EventRow
from ruche.server.storage.models import (
    AgentProgressRow,
    OccupancyDirtyRow,
    RefusedEventRow,
    StoredEventRow,
)

log = logging.getLogger(__name__)


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


def kept_versions(
    session: Session, events: Sequence[tuple[Message, bytes | bytearray]]
) -> list[Message]:
    """Of `events` (just stored with `store_events`, in this transaction), one message per
    (site, agent, seq): the version the `events` table keeps. An agent that resends a seq
    with other content (a bug, a restored outbox) is then kept once, as SQL has it, in
    every store. The query runs only for batches with a duplicate: they are rare."""
    seqs: dict[tuple[str, str], set[int]] = {}
    for message, _ in events:
        seqs.setdefault((message.topic.site, message.topic.agent), set()).add(
            int(message.payload.seq)  # type: ignore[union-attr]
        )
    stored: dict[tuple[str, str, int], str] = {}
    # One query per agent on the primary key's prefix: a row-value IN list would not use
    # the index on PostgreSQL, and resends after an outage make every batch take this path.
    for (site, agent), wanted in seqs.items():
        for seq, payload in session.execute(
            select(_EVENTS.c.seq, _EVENTS.c.payload).where(
                _EVENTS.c.site == site, _EVENTS.c.agent == agent, _EVENTS.c.seq.in_(wanted)
            )
        ):
            stored[site, agent, seq] = payload
    kept: dict[tuple[str, str, int], Message] = {}
    for message, raw in events:
        key = (message.topic.site, message.topic.agent, int(message.payload.seq))  # type: ignore[union-attr]
        if key not in kept and stored.get(key) == raw.decode():
            kept[key] = message
    return list(kept.values())


_EVENTS = cast(Table, StoredEventRow.__table__)
_REFUSED = cast(Table, RefusedEventRow.__table__)
_PROGRESS = cast(Table, AgentProgressRow.__table__)
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


def _insert_new(session: Session, rows: list[EventRow]) -> int:
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


def _insert_sqlite(session: Session, rows: list[EventRow]) -> int:
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


_DIRTY = cast(Table, OccupancyDirtyRow.__table__)


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


def advance_agents(
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
        session.execute(update(AgentProgressRow), changed)
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
    return int(session.scalar(select(func.count()).select_from(StoredEventRow)) or 0)
