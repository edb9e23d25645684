"""The door decision worker: answers tap requests over MQTT v5, audits them, sends commands.

```python
worker = DoorWorker(sessions, MqttOptions(host="127.0.0.1", port=1883,
                                          username="ruche-server", password=secret))
worker.start()                                   # connected and subscribed on return
worker.send("lyon", "door-a", Unlock(door="front", ms=3000))   # CommandSender
worker.site_changed("lyon")                      # RegistryListener: forget cached facts
worker.stop()
```

A tap is an MQTT v5 request (docs/contract.md): its response topic is the agent's own
`cmd` topic and its correlation data the tap's `request_id`. For each one the worker
reads the facts (`FactsCache`: an in-memory snapshot per site), decides with the pure
`decide_access`, publishes `Unlock` (the door's unlock time) or `Deny` (with the reason)
to the response topic with the correlation data echoed, and only then hands the audit
row to a writer thread, which appends rows in batches (one transaction per batch), so a
tap never waits on a disk write.

- Taps are consumed through a shared subscription (`$share/ruche-doors/...`): several
  workers, in one process or several against one PostgreSQL, split the load.
- A tap without a response topic is the agent's outbox sending the same event again in
  order: it is not answered (the door decided long ago), only counted.
- A response topic other than the tapping agent's own `cmd` topic is refused: the server
  account may publish anywhere, an agent must not steer it.
- A bad payload is counted by its contract reason and logged; the worker carries on.
- A tap at a door the agent does not drive is denied with `unknown_door`.
- When the facts cannot be read (the database is down), the tap is left unanswered and
  counted in `errors`: the agent then decides from its cached allow-list and reports an
  offline decision, which is better than refusing every member for a server fault.
- Answers and commands carry an MQTT v5 Message Expiry Interval (`command_expiry_s`),
  so an unlock queued for an agent that is offline is never executed minutes later.
- Anti-passback state (a member's last direction through an anti-passback door, reset at
  the site's local midnight) is kept in memory from this worker's own decisions, seeded
  from the audit log. The registry has no areas, so a door is its own area.
- Every allow-list this worker sees on the broker invalidates that site's cached facts:
  that is how a change made in another process reaches this one within a second.

Every decision is one canonical log line (`door decision`, INFO) whose fields say where,
who (the badge token's first 8 hex characters only, and the member id), what and why,
and how long it took; `on_decision` hands the same `DecisionRecord` to the metrics.

What is not durable: an online decision's audit row is written a few milliseconds after
the answer; if the process dies in between, that row is lost (the tap event itself is
kept by the agent's outbox until the event store acknowledges it).
"""

from __future__ import annotations

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
    Channel,
    Command,
    ContractError,
    Deny,
    Tap,
    Topic,
    Unlock,
    decode,
    encode_for,
    shared,
    topic_filter,
)
from ruche.refusals import RefusalLog
from ruche.server.access import audit
from ruche.server.access.enrolment import ENROLLED, Enrolled, TapEnrolments, fills_enrolment
from ruche.server.access.facts import (
    FactsCache,
    access_request,
    load_last_direction,
    local_midnight,
    with_direction,
)
from ruche.server.access.rules import (
    AccessFacts,
    Decision,
    DecisionReason,
    Direction,
    decide_access,
)
from ruche.server.errors import NotFound
from ruche.server.messaging.connection import MqttOptions, ServerConnection, expiring
from ruche.server.registry.listener import RegistryListener
from ruche.server.storage.enums import AuditKind, AuditSource

__all__ = [
    "DEFAULT_UNLOCK_MS",
    "DecisionRecord",
    "DoorStats",
    "DoorWorker",
    "MqttOptions",
    "ServerConnection",
]

log = logging.getLogger(__name__)

DEFAULT_UNLOCK_MS = 3000
UNKNOWN_DOOR = "unknown_door"
AUDIT_BATCH = 500
TOKEN_PREFIX = 8
"""Hex characters of a badge token a log line may carry: enough to follow one badge
through the logs, far too few to stand for it."""


@dataclass(frozen=True, kw_only=True)
class DecisionRecord:
    """One door decision as logs and metrics see it."""

    site: str
    agent: str
    door: str
    token: str
    member_id: int | None
    allowed: bool
    reason: str
    latency_s: float
    """From the tap reaching this worker to its answer being handed to the broker."""
    source: str = AuditSource.ONLINE.value
    """`online` (decided here) or `offline` (the agent decided from its allow-list)."""

    @property
    def result(self) -> str:
        return "allowed" if self.allowed else "denied"

    def log_fields(self) -> dict[str, object]:
        """The canonical log line's fields; never the whole badge token."""
        return {
            "site": self.site,
            "agent": self.agent,
            "door": self.door,
            "badge": self.token[:TOKEN_PREFIX],
            "member_id": self.member_id,
            "result": self.result,
            "reason": self.reason,
            "latency_ms": round(self.latency_s * 1000, 3),
            "source": self.source,
        }


def log_decision(record: DecisionRecord) -> None:
    """Write the decision's canonical log line."""
    if log.isEnabledFor(logging.INFO):
        log.info(
            "door decision: %s (%s) at %s/%s",
            record.result,
            record.reason,
            record.site,
            record.door,
            extra=record.log_fields(),
        )


@dataclass
class DoorStats:
    """Counters of the door worker, for logs, health and tests."""

    answered: int = 0
    unlocked: int = 0
    denied: int = 0
    resent: int = 0
    """Taps without a response topic (outbox resends): not answered."""
    bad: dict[str, int] = field(default_factory=dict)
    """Refused messages by contract reason (and `response_topic`)."""
    errors: int = 0
    """Taps left unanswered because the facts could not be read."""
    commands: int = 0
    audited: int = 0
    audit_failures: int = 0
    invalidations: int = 0


class DoorWorker:
    """Answers tap requests (MQTT v5) with `Unlock` or `Deny`; a `CommandSender` and a
    `RegistryListener` (it forgets a site's cached facts when told the site changed).

    Keyword arguments:

    - `group`: the shared-subscription group; workers in one group split the taps.
    - `site`: consume taps of this site only (`+`: every site).
    - `unlock_ms`: how long an allowed tap releases the strike (`door_unlock_ms` per
      `(site, door)` overrides it).
    - `command_expiry_s`: MQTT v5 Message Expiry Interval of answers and commands.
    - `cache`: the facts cache (a new one over `sessions` by default); started and
      stopped with the worker.
    - `clock`: the server's wall clock, timezone-aware.
    - `on_decision`: told every decision after its answer is sent (the metrics); it
      runs on paho's thread, so it must be quick, and what it raises is logged.
    - `enrolments`: fills a manager's enrolment with an unknown badge tapped at its door
      (`ruche.server.access.enrolment`; one over `sessions` by default). The sites
      sharing the new badge's key are then told through `listener` (this worker alone
      until the server sets the whole fan-out, allow-lists included).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        mqtt_options: MqttOptions,
        *,
        group: str = "ruche-doors",
        site: str = "+",
        unlock_ms: int = DEFAULT_UNLOCK_MS,
        door_unlock_ms: dict[tuple[str, str], int] | None = None,
        command_expiry_s: int = 10,
        cache: FactsCache | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        on_decision: Callable[[DecisionRecord], None] | None = None,
        enrolments: TapEnrolments | None = None,
    ) -> None:
        self.sessions = sessions
        self.enrolments = enrolments if enrolments is not None else TapEnrolments(sessions)
        self.listener: RegistryListener = self
        self.stats = DoorStats()
        self.on_decision = on_decision
        self.cache = cache if cache is not None else FactsCache(sessions, clock=clock)
        self._clock = clock
        self._unlock_ms = unlock_ms
        self._door_unlock_ms = dict(door_unlock_ms or {})
        self._expiry = command_expiry_s
        self._directions: dict[tuple[str, str, int], tuple[datetime, Direction]] = {}
        self._audit: queue.SimpleQueue[audit.AuditEntry | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._refusals = RefusalLog(log, "tap")
        self._taps = shared(group, topic_filter(Channel.TAP, site=site))
        self._allowlists = topic_filter(Channel.ALLOWLIST, site=site)
        self.connection = ServerConnection(
            mqtt_options,
            name="ruche-doors",
            subscriptions=[(self._taps, 1), (self._allowlists, 0)],
            handler=self._on_message,
        )

    # --- lifecycle ----------------------------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Start the cache and the audit writer, connect and subscribe."""
        self.cache.start()
        self._writer = threading.Thread(target=self._write_loop, name="door-audit", daemon=True)
        self._writer.start()
        try:
            self.connection.start(timeout)
        except BaseException:
            self.stop()
            raise
        log.info("door worker consuming %s", self._taps)

    def stop(self) -> None:
        """Disconnect, then write the audit rows still queued."""
        self.connection.stop()
        self._refusals.flush()
        if self._writer is not None:
            self._audit.put(None)
            self._writer.join(timeout=30)
            self._writer = None
        self.cache.stop()

    # --- ports --------------------------------------------------------------------

    def send(self, site: str, agent: str, command: Command) -> None:
        """`CommandSender`: publish `command` on the agent's `cmd` topic, QoS 1, expiring."""
        topic = str(Topic.cmd(site, agent))
        self.connection.publish(
            topic, encode_for(Channel.CMD, command), properties=expiring(self._expiry)
        )
        self.stats.commands += 1

    def site_changed(self, site: str) -> None:
        """`RegistryListener`: the site's registry changed; forget its cached facts."""
        self.stats.invalidations += 1
        self.cache.invalidate(site)

    # --- taps ---------------------------------------------------------------------

    def _on_message(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        if not msg.topic.endswith("/allowlist"):
            self._on_tap(client, msg)
            return
        try:
            changed = Topic.parse(msg.topic)
        except ContractError:
            return
        self.site_changed(changed.site)

    def _count_bad(self, reason: str, topic: str = "", detail: str = "") -> None:
        self.stats.bad[reason] = self.stats.bad.get(reason, 0) + 1
        if detail:
            self._refusals.refused(reason, topic, detail)

    def _on_tap(self, client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        started = time.perf_counter()
        try:
            message = decode(msg.topic, msg.payload)
        except ContractError as exc:
            self._count_bad(exc.reason.value, msg.topic, exc.detail)
            return
        tap, topic = message.payload, message.topic
        if not isinstance(tap, Tap) or topic.device is None:
            self._count_bad("bad_topic")
            return
        props = msg.properties
        response = getattr(props, "ResponseTopic", None)
        if not response:
            self.stats.resent += 1
            return
        if response != str(Topic.cmd(topic.site, topic.agent)):
            detail = f"asks for its answer on {response!r}, not its agent's cmd topic"
            self._count_bad("response_topic", msg.topic, detail)
            return
        now = self._clock()
        try:
            answer, row = self._decide(topic.site, topic.agent, topic.device, tap, now)
        except Exception:
            self.stats.errors += 1
            log.exception("cannot decide the tap on %s: left to the agent's allow-list", msg.topic)
            return
        correlation = getattr(props, "CorrelationData", None)
        client.publish(
            response,
            encode_for(Channel.CMD, answer),
            qos=1,
            properties=expiring(self._expiry, correlation=correlation),
        )
        latency_s = time.perf_counter() - started
        self.stats.answered += 1
        if isinstance(answer, Unlock):
            self.stats.unlocked += 1
        else:
            self.stats.denied += 1
        self._audit.put(row)
        self._tell(
            DecisionRecord(
                site=topic.site,
                agent=topic.agent,
                door=topic.device,
                token=tap.token,
                member_id=row.member_id,
                allowed=isinstance(answer, Unlock),
                reason=row.reason or "",
                latency_s=latency_s,
            )
        )

    def _tell(self, record: DecisionRecord) -> None:
        log_decision(record)
        if self.on_decision is None:
            return
        try:
            self.on_decision(record)
        except Exception:
            log.exception("the decision hook failed (the tap was answered)")

    def _decide(
        self, site: str, agent: str, door: str, tap: Tap, now: datetime
    ) -> tuple[Unlock | Deny, audit.AuditEntry]:
        def entry(*, allowed: bool, reason: str, member_id: int | None) -> audit.AuditEntry:
            return audit.AuditEntry(
                kind=AuditKind.DECISION,
                source=AuditSource.ONLINE,
                site=site,
                agent=agent,
                door=door,
                token=tap.token,
                member_id=member_id,
                allowed=allowed,
                reason=reason,
                decided_at=now,
                received_at=now,
                agent_seq=tap.seq,
            )

        try:
            facts = self.cache.access_facts(site, agent, door, tap.token, now)
        except NotFound:
            deny = Deny(door=door, request_id=tap.request_id, reason=UNKNOWN_DOOR)
            return deny, entry(allowed=False, reason=UNKNOWN_DOOR, member_id=None)
        request = access_request(tap.token, door, tap.reader)
        if facts.door.anti_passback:
            facts = with_direction(facts, self._last_direction(facts, now))
        decision = decide_access(request, facts, now)
        member_id = None if facts.holder is None else int(facts.holder.member.id)
        enrolled = self._enrol(site, door, tap.token, decision, now)
        if enrolled is not None:
            deny = Deny(door=door, request_id=tap.request_id, reason=ENROLLED)
            return deny, entry(allowed=False, reason=ENROLLED, member_id=enrolled.member_id)
        if not decision.allowed:
            deny = Deny(door=door, request_id=tap.request_id, reason=decision.reason.value)
            return deny, entry(allowed=False, reason=decision.reason.value, member_id=member_id)
        if member_id is not None:
            self._remember_direction(facts, member_id, decision, now)
        ms = facts.door.unlock_ms or self._door_unlock_ms.get((site, door), self._unlock_ms)
        unlock = Unlock(door=door, ms=ms, request_id=tap.request_id)
        return unlock, entry(allowed=True, reason=decision.reason.value, member_id=member_id)

    def _enrol(
        self, site: str, door: str, token: str, decision: Decision, now: datetime
    ) -> Enrolled | None:
        """An unknown badge fills the enrolment waiting at its door, if one does; the
        sites sharing its key are told once it is committed, so allow-lists carry it."""
        if decision.allowed or not fills_enrolment(decision.reason):
            return None
        try:
            enrolled = self.enrolments.fill(site, door, token, now)
        except Exception:
            log.exception("cannot enrol the badge tapped at %s/%s: refused as unknown", site, door)
            return None
        if enrolled is not None:
            for slug in enrolled.sites:
                self.listener.site_changed(slug)
        return enrolled

    def _last_direction(self, facts: AccessFacts, now: datetime) -> Direction | None:
        if facts.holder is None:
            return None
        member_id = int(facts.holder.member.id)
        key = (facts.site.id, facts.door.id, member_id)
        midnight = local_midnight(facts.site, now)
        known = self._directions.get(key)
        if known is not None and known[0] == midnight:
            return known[1]
        with self.sessions.begin() as session:
            direction = load_last_direction(
                session, facts.site.id, facts.door.id, member_id, midnight
            )
        if direction is not None:
            self._directions[key] = (midnight, direction)
        return direction

    def _remember_direction(
        self, facts: AccessFacts, member_id: int, decision: Decision, now: datetime
    ) -> None:
        if not facts.door.anti_passback:
            return
        direction = Direction.OUT if decision.reason is DecisionReason.EXIT else Direction.IN
        key = (facts.site.id, facts.door.id, member_id)
        self._directions[key] = (local_midnight(facts.site, now), direction)

    # --- audit --------------------------------------------------------------------

    def _write_loop(self) -> None:
        while True:
            first = self._audit.get()
            batch: list[audit.AuditEntry] = []
            stopping = first is None
            if first is not None:
                batch.append(first)
            while len(batch) < AUDIT_BATCH:
                try:
                    item = self._audit.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                else:
                    batch.append(item)
            if batch:
                self._write(batch)
            if stopping:
                return

    def _write(self, batch: list[audit.AuditEntry]) -> None:
        try:
            with self.sessions.begin() as session:
                audit.append_many(session, batch)
        except Exception:
            if len(batch) == 1:
                self.stats.audit_failures += 1
                log.exception("audit row for %s/%s seq %s lost", batch[0].site, batch[0].agent,
                              batch[0].agent_seq)  # fmt: skip
                return
            log.warning("audit batch of %d failed: writing its rows one by one", len(batch))
            for item in batch:
                self._write([item])
            return
        self.stats.audited += len(batch)
