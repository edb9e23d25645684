"""A batch of agents' events as the `events` table takes them: one row per (site, agent,
seq), each agent's seqs (stored and refused alike, for its ack), each site's earliest
event time (for the occupancy mark)."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from ruche.broker import (
    Message,
    PresenceState,
)
from ruche.server.registry.ownership import Refusal

log = logging.getLogger(__name__)


_COLUMNS = ("site", "agent", "seq", "channel", "device", "kind", "ts", "received_at", "payload")
EventRow = tuple[str, str, int, str, str, str, datetime, datetime, str]
"""An `events` row in `_COLUMNS` order."""


def event_row(message: Message, received_at: datetime, raw: bytes | bytearray) -> dict[str, object]:
    """The `events` row of one decoded agent event, as a dict (for `StoredEvent(**row)`)."""
    return dict(zip(_COLUMNS, _row(message, received_at, raw), strict=True))


def _row(message: Message, received_at: datetime, raw: bytes | bytearray) -> EventRow:
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

    rows: list[EventRow]
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
        unique: dict[tuple[str, str, int], EventRow] = {}
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


def refused_row(
    message: Message, refusal: tuple[Refusal, str], received_at: datetime
) -> RefusedRow:
    topic, (reason, detail) = message.topic, refusal
    seq = int(message.payload.seq)  # type: ignore[union-attr]
    return RefusedRow(topic.site, topic.agent, seq, topic.channel.value, topic.device or "",
                      reason.value, received_at, detail)  # fmt: skip
