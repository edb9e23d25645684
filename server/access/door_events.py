"""Door events into the audit log: offline decisions and door alarms reported by agents.

```python
worker = DoorEventWorker(sessions, MqttOptions(...))
worker.start()                    # connected and subscribed on return
worker.stop()
```

Agents report on `ruche/v1/{site}/{agent}/door/{door}/event` (a shared subscription,
`$share/ruche-door-events/...`, so several workers split them):

- `offline_decision`: kind `decision`, source `offline`, allowed and reason as the agent
  decided, `decided_at` the agent's `ts`, and the member the token belongs to.
- `forced`, `held_open`: kind `alarm`, source `agent`, reason the event's kind,
  `decided_at` the agent's `ts`.
- `opened`, `closed`: no row (door history is the event store's, not the audit log's).
- An event for a door the registry does not give to its agent is refused, counted in
  `bad` by its reason (`ruche.server.registry.ownership`) and logged, a few lines a window.

Each row carries the event's `(agent, seq)` as `agent_seq`, and `audit.append` skips an
event it already holds, so an agent resending from its outbox never logs twice. Rows are
written in the paho callback, one transaction each: door events are rare, and writing
before the (automatic) PUBACK keeps them in order.

What this worker does not do: acknowledge events to agents (the event store does, once
it has them durably), or keep the offline decision's `tap_seq` (the audit log has no
column for it: the tap is found by the same agent and `decided_at`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import paho.mqtt.client as mqtt
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import (
    Channel,
    ContractError,
    DoorForced,
    DoorHeldOpen,
    OfflineDecision,
    decode,
    shared,
    topic_filter,
)
from ruche.broker.topics import Topic
from ruche.refusals import RefusalLog
from ruche.server.access import audit
from ruche.server.messaging.connection import MqttOptions, ServerConnection
from ruche.server.registry.ownership import DeviceOwners
from ruche.server.storage.enums import AuditKind, AuditSource
from ruche.server.storage.models import BadgeRow

__all__ = ["DoorEventStats", "DoorEventWorker", "audit_entry"]

log = logging.getLogger(__name__)


def audit_entry(
    topic: Topic,
    event: OfflineDecision | DoorForced | DoorHeldOpen,
    *,
    member_id: int | None,
    received_at: datetime,
) -> audit.AuditEntry:
    """The audit row for an agent's door event (pure)."""
    offline = isinstance(event, OfflineDecision)
    return audit.AuditEntry(
        kind=AuditKind.DECISION if offline else AuditKind.ALARM,
        source=AuditSource.OFFLINE if offline else AuditSource.AGENT,
        site=topic.site,
        agent=topic.agent,
        door=topic.device,
        token=event.token if isinstance(event, OfflineDecision) else None,
        member_id=member_id,
        allowed=event.allowed if isinstance(event, OfflineDecision) else None,
        reason=event.reason if isinstance(event, OfflineDecision) else event.kind,
        decided_at=event.ts,
        received_at=received_at,
        agent_seq=event.seq,
    )


@dataclass
class DoorEventStats:
    audited: int = 0
    """Events handed to the audit log (an event already there counts again: it is a no-op)."""
    ignored: int = 0
    """Opened and closed events."""
    bad: dict[str, int] = field(default_factory=dict)
    failures: int = 0


class DoorEventWorker:
    """Appends agents' offline decisions and door alarms to the audit log.

    Keyword arguments: `group` the shared-subscription group; `site` one site's events
    only (`+`: every site); `clock` the server's wall clock (the rows' `received_at`).
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        mqtt_options: MqttOptions,
        *,
        group: str = "ruche-door-events",
        site: str = "+",
        owners: DeviceOwners | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.sessions = sessions
        self.stats = DoorEventStats()
        self._clock = clock
        self._owners = owners or DeviceOwners(sessions)
        self._refusals = RefusalLog(log, "door event")
        self._filter = shared(group, topic_filter(Channel.DOOR_EVENT, site=site))
        self.connection = ServerConnection(
            mqtt_options,
            name="ruche-door-events",
            subscriptions=[(self._filter, 1)],
            handler=self._on_message,
        )

    def start(self, timeout: float = 10.0) -> None:
        self.connection.start(timeout)
        log.info("door event worker consuming %s", self._filter)

    def stop(self) -> None:
        self.connection.stop()
        self._refusals.flush()

    def _refuse(self, reason: str, topic: str, detail: str) -> None:
        self.stats.bad[reason] = self.stats.bad.get(reason, 0) + 1
        self._refusals.refused(reason, topic, detail)

    def _on_message(self, _client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        try:
            message = decode(msg.topic, msg.payload)
        except ContractError as exc:
            self._refuse(exc.reason.value, msg.topic, exc.detail)
            return
        event = message.payload
        if not isinstance(event, OfflineDecision | DoorForced | DoorHeldOpen):
            self.stats.ignored += 1
            return
        try:
            refusal = self._owners.check(message.topic)
            if refusal is not None:
                self._refuse(refusal[0].value, msg.topic, refusal[1])
                return
            with self.sessions.begin() as session:
                member_id = None
                if isinstance(event, OfflineDecision):
                    member_id = session.scalars(
                        select(BadgeRow.member_id).where(BadgeRow.token == event.token)
                    ).first()
                entry = audit_entry(
                    message.topic, event, member_id=member_id, received_at=self._clock()
                )
                audit.append(session, entry)
        except Exception:
            self.stats.failures += 1
            log.exception("door event %s seq %s not audited", msg.topic, event.seq)
            return
        self.stats.audited += 1
