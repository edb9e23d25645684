"""Event ingestion: agents' events in, stored once in SQL, acked to the agent after the commit.

Workers share the load through a shared subscription (`$share/ruche-ingest/...`), so
several processes can run against one PostgreSQL. paho's manual ack holds the broker's
PUBACK until the batch is committed, and each agent's `ack` says the highest seq up to
which every one of its events is stored. Whichever process dies, nothing is lost (the
agent resends what is not acked, the broker what is not PUBACKed) and nothing is
counted twice (events are keyed by (site, agent, seq)).

Bad messages (not the contract) are counted by reason, logged, and acknowledged to the
broker so they are not redelivered forever. An event for a desk or door the registry
does not give to its agent (`ruche.server.registry.ownership`), and an event of an
agent's stream whose payload the contract refuses but whose `seq` can be read (a newer
agent's schema version, a value out of range), are refused and counted too, and kept by
key in `refused_events` with the reason: the agent's ack moves past them (and names them,
`Ack.refused`), so one bad event never wedges an agent's window. Refusals are logged a
few a window (`RefusalLog`), however many arrive. InfluxDB points are written to the
writer's durable spool before the SQL commit, so a crash between the two means a
redelivery (and the same points rewritten), never a point missing.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import (
    EVENT_CHANNELS,
    Ack,
    Channel,
    ContractError,
    Message,
    Topic,
    decode,
    encode,
    max_bytes,
    shared,
    topic_filter,
)
from ruche.broker.payloads import MAX_SEQ
from ruche.refusals import RefusalLog
from ruche.server.messaging.connection import MqttOptions, ServerConnection
from ruche.server.occupancy.batch import EventBatch, RefusedRow, refused_row
from ruche.server.occupancy.event_store import advance_agents, kept_versions, store_events
from ruche.server.registry.ownership import DeviceOwners

log = logging.getLogger(__name__)


BATCH_MAX = 1000
"""Messages per commit: a quarter of Mosquitto's max_inflight_messages (4000), because
messages awaiting our manual ack count against it, so the next batches keep arriving
while one commits. With a window of two batches (1000 and 500) the broker stalled on
every slow commit: 10,000 events/s for 30 s had a lag p99 of 2.3 s, against 0.9-1.5 s."""
BATCH_WAIT_S = 0.02
"""How long a batch waits for more messages before it is committed."""


@dataclass
class IngestStats:
    received: int = 0
    stored: int = 0
    duplicates: int = 0
    refused: int = 0
    """Events refused by key: for a desk or door their agent does not own, or whose
    payload the contract refuses while its seq can be read."""
    acks_sent: int = 0
    batches: int = 0
    commit_failures: int = 0
    bad: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Arrival:
    msg: mqtt.MQTTMessage
    message: Message | None
    received_at: datetime
    refused: RefusedRow | None = None
    """An event of an agent's stream the contract refuses, kept by its key."""


def _refused_event(
    topic: str, payload: bytes | bytearray, error: ContractError, at: datetime
) -> RefusedRow | None:
    """The key of an agent's event the contract refuses (a newer agent's schema version, a
    value out of range), when its topic and its `seq` can still be read: refused by key,
    the agent's ack passes it and its window moves on instead of resending it forever.
    None for anything else (a bad topic, no readable seq: not a place in any stream)."""
    try:
        parsed = Topic.parse(topic)
    except ContractError:
        return None
    if parsed.channel not in EVENT_CHANNELS or len(payload) > max_bytes(parsed.channel):
        return None
    try:
        data = json.loads(payload)
    except ValueError:
        return None
    seq = data.get("seq") if isinstance(data, dict) else None
    if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
        return None
    return RefusedRow(parsed.site, parsed.agent, seq, parsed.channel.value, parsed.device or "",
                      error.reason.value, at, error.detail)  # fmt: skip


class IngestWorker:
    """Consumes every agent event (or one site's), stores it once, and acks it."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        mqtt_options: MqttOptions,
        *,
        group: str = "ruche-ingest",
        site: str = "+",
        before_ack: Callable[[list[Message]], None] | None = None,
        after_commit: Callable[[list[Message]], None] | None = None,
        owners: DeviceOwners | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """`before_ack` receives each batch's events once stored, before they are acked,
        to make them durable elsewhere too (the InfluxDB spool); if it raises, nothing is
        acked and the batch is retried (then as duplicates: each as SQL kept it).
        `after_commit` receives them once stored (the live floor); it must not raise.
        `owners`: who may report for which device (one cache per process is enough; made
        here when not given)."""
        self.sessions = sessions
        self._after_commit = after_commit
        self._owners = owners or DeviceOwners(sessions)
        self._refusals = RefusalLog(log, "event")
        self.stats = IngestStats()
        self._before_ack = before_ack
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
        received_at = self._clock()
        refused = None
        try:
            message: Message | None = decode(msg.topic, msg.payload)
        except ContractError as exc:
            message = None
            refused = _refused_event(msg.topic, msg.payload, exc, received_at)
            if refused is None:  # else counted and logged with the batch's refusals
                self._count_bad(exc.reason.value)
                self._refusals.refused(exc.reason.value, msg.topic, exc.detail)
        self._inbox.put(_Arrival(msg, message, received_at, refused))

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
            if arrival.refused is not None:
                refused.append(arrival.refused)
            if message is None:
                continue
            refusal = self._owners.check(message.topic)
            if refusal is None:
                good.append((message, arrival.received_at, arrival.msg.payload))
            else:
                refused.append(refused_row(message, refusal, arrival.received_at))
        messages = [message for message, _, _ in good]
        events = EventBatch.of(good, refused)
        with self.sessions.begin() as session:
            inserted = store_events(session, events)
            progress = advance_agents(session, events.seqs, self._clock())
        if self._before_ack is not None and messages:
            # After the commit, so SQLite's write lock is not held through the spool's
            # fsync; before the acks, so a spool that refuses (or a crash) means a
            # redelivery, which the duplicate path below spools. With duplicates, only
            # the version SQL kept goes on.
            if inserted == len(messages):
                self._before_ack(messages)
            else:
                with self.sessions() as session:
                    self._before_ack(kept_versions(session, [(m, raw) for m, _, raw in good]))
        self.stats.received += len(batch)
        self.stats.stored += inserted
        self.stats.duplicates += len(messages) - inserted
        self.stats.batches += 1
        self._report_refused(refused)
        # Durable now: tell the agents, then release the broker's copies.
        passed: dict[tuple[str, str], list[int]] = {}
        for row in refused:
            passed.setdefault((row.site, row.agent), []).append(row.seq)
        for (site, agent), seq in progress.items():
            over = sorted(s for s in passed.get((site, agent), ()) if s <= seq)[:1000]
            ack = Ack(seq=seq, refused=tuple(over) or None)
            self.connection.publish(str(Topic.ack(site, agent)), encode(ack))
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
