"""The audit log: append-only and hash-chained, so an edited or deleted row is detected.

```python
row = append(session, AuditEntry(kind=AuditKind.DECISION, source=AuditSource.ONLINE,
                                 site="lyon", agent="a1", door="front", token=token,
                                 member_id=7, allowed=False, reason="outside_schedule",
                                 decided_at=now, received_at=now, agent_seq=42))
page = query(session, member_id=7, limit=50)       # newest first; page.next_cursor
assert verify(session).ok                         # what `ruche audit verify` runs
```

Each row's `hash` is SHA-256 over a canonical JSON of its fields, its id and the previous
row's hash (`prev_hash`; the first row's is `GENESIS_HASH`). Ids are assigned here, one
more than the last, so the chain has no gaps. One head row (`audit_head`) holds the last id
and hash; every append locks it (`SELECT ... FOR UPDATE` on PostgreSQL, SQLite's write
lock taken at `BEGIN IMMEDIATE`), so two writers can never both extend the same row and
fork the chain, and deleting the newest rows is caught against it.

What the chain proves: the rows were not changed after being written, unless someone
with write access rewrote every later row and the head too. Anchoring the head's hash
elsewhere (a log line, a ticket, another machine) now and then closes that gap.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server.errors import Invalid
from ruche.server.storage.enums import AuditKind, AuditSource
from ruche.server.storage.models import AUDIT_HEAD_ID, GENESIS_HASH, AuditHeadRow, AuditRow

MAX_PAGE = 1000
VERIFY_BATCH = 1000


@dataclass(frozen=True, kw_only=True)
class AuditEntry:
    """What happened, as the caller knows it; `append` adds the id and the hashes."""

    kind: AuditKind
    source: AuditSource
    site: str
    decided_at: datetime
    """When it happened: the decision, the unlock, the alarm (agent time for agent events)."""
    received_at: datetime
    """When the server learnt of it (later than `decided_at` for offline decisions)."""
    agent: str | None = None
    door: str | None = None
    token: str | None = None
    member_id: int | None = None
    allowed: bool | None = None
    reason: str | None = None
    actor: str | None = None
    agent_seq: int | None = None

    def __post_init__(self) -> None:
        for name in ("decided_at", "received_at"):
            value: datetime = getattr(self, name)
            if value.tzinfo is None or value.utcoffset() is None:
                raise Invalid(f"audit {name} {value.isoformat()} has no timezone")
            object.__setattr__(self, name, value.astimezone(UTC))
        if self.kind is AuditKind.DECISION and self.allowed is None:
            raise Invalid("an audit decision says whether the door opened (allowed)")
        if self.agent_seq is not None and self.agent is None:
            raise Invalid("an agent seq needs the agent it counts for")


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]
    next_cursor: int | None
    """Pass as `cursor` for the next (older) page; None when this is the last."""


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    """How many rows were read."""
    bad_id: int | None = None
    """The first row that does not verify (for a deleted row, its id)."""
    problem: str | None = None


# --- the pure part -----------------------------------------------------------------------


def _instant(value: datetime) -> str:
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def canonical(fields: Mapping[str, object]) -> bytes:
    """The bytes a row's hash covers: sorted-key compact JSON, instants as UTC ISO 8601."""
    plain = {k: _instant(v) if isinstance(v, datetime) else v for k, v in fields.items()}
    return json.dumps(plain, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def chain_hash(fields: Mapping[str, object]) -> str:
    """SHA-256 of the canonical form of a row's fields, `id` and `prev_hash` included."""
    return hashlib.sha256(canonical(fields)).hexdigest()


def hashed_fields(row: AuditRow) -> dict[str, object]:
    """What a stored row's hash covers: every column but `hash` itself."""
    return {
        "id": row.id,
        "kind": row.kind.value,
        "source": row.source.value,
        "site": row.site,
        "agent": row.agent,
        "door": row.door,
        "token": row.token,
        "member_id": row.member_id,
        "allowed": row.allowed,
        "reason": row.reason,
        "actor": row.actor,
        "agent_seq": row.agent_seq,
        "decided_at": row.decided_at,
        "received_at": row.received_at,
        "prev_hash": row.prev_hash,
    }


def check_row(row: AuditRow, expected_id: int, prev_hash: str) -> str | None:
    """Why `row` does not follow a chain whose last row was `expected_id - 1`, or None."""
    if row.id != expected_id:
        return f"row {expected_id} is missing (deleted?): the next row is {row.id}"
    if row.prev_hash != prev_hash:
        return f"row {row.id} does not follow row {row.id - 1}: its prev_hash differs"
    if chain_hash(hashed_fields(row)) != row.hash:
        return f"row {row.id} was altered: its fields do not match its hash"
    return None


# --- the shell ---------------------------------------------------------------------------


def _lock_head(session: Session) -> AuditHeadRow:
    head = session.scalars(
        select(AuditHeadRow)
        .where(AuditHeadRow.id == AUDIT_HEAD_ID)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if head is None:
        raise RuntimeError("the audit chain has no head row: run `ruche server migrate`")
    return head


def append(session: Session, entry: AuditEntry) -> AuditRow:
    """Add `entry` at the end of the chain, in the caller's transaction.

    An agent event already logged (same site, agent and seq) is not logged twice: the
    stored row is returned, so redelivery is harmless.
    """
    return append_many(session, [entry])[0]


def append_many(session: Session, entries: Sequence[AuditEntry]) -> list[AuditRow]:
    """`append` for a batch: one head lock, one duplicate query, one flush.

    The door worker writes its decisions this way; per-row appends cost about a
    millisecond of CPU each, which taps waiting for an answer would share.
    """
    if not entries:
        return []
    head = _lock_head(session)
    keyed = [(e.site, e.agent, e.agent_seq) for e in entries if e.agent_seq is not None]
    stored: dict[tuple[str, str | None, int | None], AuditRow] = {}
    if keyed:
        rows = session.scalars(
            select(AuditRow).where(
                AuditRow.agent_seq.in_({seq for _, _, seq in keyed}),
                AuditRow.site.in_({site for site, _, _ in keyed}),
            )
        )
        stored = {(r.site, r.agent, r.agent_seq): r for r in rows}
    out: list[AuditRow] = []
    for entry in entries:
        key = (entry.site, entry.agent, entry.agent_seq)
        if entry.agent_seq is not None and key in stored:
            out.append(stored[key])
            continue
        row = AuditRow(
            id=head.last_id + 1,
            kind=entry.kind,
            source=entry.source,
            site=entry.site,
            agent=entry.agent,
            door=entry.door,
            token=entry.token,
            member_id=entry.member_id,
            allowed=entry.allowed,
            reason=entry.reason,
            actor=entry.actor,
            agent_seq=entry.agent_seq,
            decided_at=entry.decided_at,
            received_at=entry.received_at,
            prev_hash=head.hash,
        )
        row.hash = chain_hash(hashed_fields(row))
        head.last_id, head.hash = row.id, row.hash
        session.add(row)
        if entry.agent_seq is not None:
            stored[key] = row
        out.append(row)
    session.flush()
    return out


def query(
    session: Session,
    *,
    member_id: int | None = None,
    site: str | None = None,
    door: str | None = None,
    kind: AuditKind | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 100,
    cursor: int | None = None,
) -> AuditPage:
    """Rows matching every filter, newest first; `since <= decided_at < until`."""
    if not 1 <= limit <= MAX_PAGE:
        raise Invalid(f"limit must be between 1 and {MAX_PAGE}, not {limit}")
    statement = select(AuditRow).order_by(AuditRow.id.desc()).limit(limit + 1)
    if member_id is not None:
        statement = statement.where(AuditRow.member_id == member_id)
    if site is not None:
        statement = statement.where(AuditRow.site == site)
    if door is not None:
        statement = statement.where(AuditRow.door == door)
    if kind is not None:
        statement = statement.where(AuditRow.kind == kind)
    if since is not None:
        statement = statement.where(AuditRow.decided_at >= since)
    if until is not None:
        statement = statement.where(AuditRow.decided_at < until)
    if cursor is not None:
        statement = statement.where(AuditRow.id < cursor)
    rows = list(session.scalars(statement))
    more = len(rows) > limit
    rows = rows[:limit]
    return AuditPage(rows=rows, next_cursor=rows[-1].id if more else None)


def verify(session: Session, *, batch: int = VERIFY_BATCH) -> VerifyResult:
    """Walk the whole chain in id order; name the first row that breaks it, and why."""
    prev_id, prev_hash, checked = 0, GENESIS_HASH, 0
    while True:
        rows = session.scalars(
            select(AuditRow)
            .where(AuditRow.id > prev_id)
            .order_by(AuditRow.id)
            .limit(batch)
            .execution_options(populate_existing=True)
        ).all()
        for row in rows:
            checked += 1
            problem = check_row(row, prev_id + 1, prev_hash)
            if problem is not None:
                bad = prev_id + 1 if row.id != prev_id + 1 else row.id
                return VerifyResult(ok=False, checked=checked, bad_id=bad, problem=problem)
            prev_id, prev_hash = row.id, row.hash
        if len(rows) < batch:
            break
    head = session.scalars(
        select(AuditHeadRow)
        .where(AuditHeadRow.id == AUDIT_HEAD_ID)
        .execution_options(populate_existing=True)
    ).one_or_none()
    if head is None:
        return VerifyResult(
            ok=False, checked=checked, problem="the chain head row is missing (deleted?)"
        )
    if head.last_id > prev_id:
        problem = f"row {prev_id + 1} is missing (deleted?): the log ends at row {head.last_id}"
        return VerifyResult(ok=False, checked=checked, bad_id=prev_id + 1, problem=problem)
    if head.last_id < prev_id or head.hash != prev_hash:
        problem = f"the chain head does not match row {prev_id}: it was written around the log"
        return VerifyResult(ok=False, checked=checked, bad_id=prev_id, problem=problem)
    return VerifyResult(ok=True, checked=checked)
