"""The live floor: each site's desks and door events in memory, pushed to page subscribers.

```python
hub = LiveHub(sessions, options)
hub.start()                      # seeded from SQL, then fed by MQTT
queue = hub.subscribe()          # inside the event loop that will read it
snapshot = hub.snapshot("lyon")  # {"site": ..., "desks": [...], "doors": [...], ...}
hub.stop()
```

The hub connects with the server account on plain (not shared) subscriptions, so that
every server process sees every presence, tap, door event and status. paho's thread
updates the state under a lock and hands each change to the subscribers' event loops
with `loop.call_soon_threadsafe`. A bad payload is counted and dropped, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

import paho.mqtt.client as mqtt
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import (
    Channel,
    ContractError,
    Message,
    Presence,
    PresenceState,
    Status,
    Tap,
    decode,
    topic_filter,
)
from ruche.refusals import RefusalLog
from ruche.server.messaging.connection import MqttOptions, ServerConnection
from ruche.server.occupancy.checkin import checked_in_today
from ruche.server.storage.enums import BookingStatus
from ruche.server.storage.models import (
    AgentRow,
    BookingRow,
    DeskRow,
    DoorRow,
    SiteRow,
    StoredEventRow,
    ZoneRow,
)

log = logging.getLogger(__name__)

RECENT_DOOR_EVENTS = 20
"""How many door events a site keeps for the page."""
QUEUE_SIZE = 1000
"""Changes a subscriber may fall behind by before it is dropped."""

Change = dict[str, Any]
"""One change as the page receives it (JSON-ready)."""


@dataclass(kw_only=True)
class DeskView:
    """A desk as the floor page draws it."""

    slug: str
    zone: str
    agent: str | None
    x: int | None
    y: int | None
    presence: str = "unknown"
    """occupied, vacant, or unknown (nothing heard yet)."""
    fault: bool = False
    """Its agent reports the sensor at fault."""
    booked: bool = False
    no_show: bool = False
    member: str | None = None
    """The member who checked in at it last today by its QR code (`occupancy.checkin`)."""
    changed_at: datetime | None = None

    @property
    def state(self) -> str:
        """What the page colours: fault, occupied, no_show, booked or free."""
        if self.fault:
            return "fault"
        if self.presence == PresenceState.OCCUPIED:
            return "occupied"
        if self.no_show:
            return "no_show"
        return "booked" if self.booked else "free"

    def as_json(self) -> Change:
        return {
            "desk": self.slug,
            "zone": self.zone,
            "x": self.x,
            "y": self.y,
            "state": self.state,
            "member": self.member,
            "changed_at": None if self.changed_at is None else self.changed_at.isoformat(),
        }


@dataclass
class SiteFloor:
    """One site's live state."""

    site: str
    name: str
    desks: dict[str, DeskView] = field(default_factory=dict)
    door_agents: dict[str, str | None] = field(default_factory=dict)
    """Each door's agent: only it may report for the door."""
    doors: deque[Change] = field(default_factory=lambda: deque(maxlen=RECENT_DOOR_EVENTS))
    headcount: int = 0
    """Desks occupied now; kept by `apply` (counting on every event would cost O(desks))."""

    def recount(self) -> None:
        self.headcount = sum(
            1 for desk in self.desks.values() if desk.presence == PresenceState.OCCUPIED
        )

    def as_json(self) -> Change:
        return {
            "site": self.site,
            "name": self.name,
            "headcount": self.headcount,
            "desks": [desk.as_json() for desk in self.desks.values()],
            "doors": list(self.doors),
        }

    def apply(self, message: Message) -> list[Change]:
        """The changes `message` makes to this floor: none for a heartbeat, or for a desk
        or door that is unknown or not its agent's (an agent speaks only for its own)."""
        payload, topic = message.payload, message.topic
        if isinstance(payload, Presence):
            desk = self.desks.get(topic.device or "")
            if desk is None or desk.agent != topic.agent or desk.presence == payload.state:
                return []
            if desk.presence == PresenceState.OCCUPIED:
                self.headcount -= 1
            if payload.state == PresenceState.OCCUPIED:
                self.headcount += 1
            desk.presence = payload.state
            desk.changed_at = payload.ts
            return [self._desk_change(desk)]
        if isinstance(payload, Status):
            faults = set(payload.faults) if payload.state == "online" else set()
            changes = []
            for desk in self.desks.values():
                if desk.agent == topic.agent and desk.fault != (desk.slug in faults):
                    desk.fault = desk.slug in faults
                    desk.changed_at = payload.ts
                    changes.append(self._desk_change(desk))
            return changes
        door = topic.device or ""
        if door not in self.door_agents or self.door_agents[door] != topic.agent:
            return []
        kind = "tap" if isinstance(payload, Tap) else str(getattr(payload, "kind", "event"))
        ts = getattr(payload, "ts", None)
        event = {
            "door": topic.device,
            "agent": topic.agent,
            "kind": kind,
            "ts": ts.isoformat() if isinstance(ts, datetime) else None,
        }
        self.doors.appendleft(event)
        return [{"type": "door", "site": self.site, "event": event}]

    def _desk_change(self, desk: DeskView) -> Change:
        return {
            "type": "desk",
            "site": self.site,
            "desk": desk.as_json(),
            "headcount": self.headcount,
        }


@dataclass(frozen=True, kw_only=True)
class AgentLink:
    """An agent's connection, as its last status said (the alarms page lists those offline)."""

    online: bool
    reported_at: datetime
    """The status's own time: the same for every process that heard it, so it names one
    offline spell (a last will carries the time its agent connected)."""
    heard_at: datetime
    """When this hub heard it: the time shown as "offline since"."""


def load_floor(session: Session, site: SiteRow, *, now: datetime) -> SiteFloor:
    """A site's floor from SQL: desks, their latest stored presence, today's bookings."""
    floor = SiteFloor(site=site.slug, name=site.name)
    rows = session.execute(
        select(DeskRow, ZoneRow.name, AgentRow.slug)
        .join(ZoneRow, DeskRow.zone_id == ZoneRow.id)
        .outerjoin(AgentRow, DeskRow.agent_id == AgentRow.id)
        .where(DeskRow.site_id == site.id)
        .order_by(DeskRow.y, DeskRow.x, DeskRow.slug)
    )
    by_id: dict[int, DeskView] = {}
    members = checked_in_today(session, site, now=now)
    for desk, zone, agent in rows:
        view = DeskView(slug=desk.slug, zone=zone, agent=agent, x=desk.x, y=desk.y,
                        member=members.get(desk.id))  # fmt: skip
        floor.desks[desk.slug] = by_id[desk.id] = view
    doors = session.execute(
        select(DoorRow.slug, AgentRow.slug)
        .outerjoin(AgentRow, DoorRow.agent_id == AgentRow.id)
        .where(DoorRow.site_id == site.id)
    )
    floor.door_agents = dict(doors.all())
    latest = (
        select(StoredEventRow.device, func.max(StoredEventRow.ts).label("ts"))
        .where(StoredEventRow.site == site.slug, StoredEventRow.channel == Channel.PRESENCE.value)
        .group_by(StoredEventRow.device)
        .subquery()
    )
    events = session.execute(
        select(StoredEventRow.device, StoredEventRow.kind, StoredEventRow.ts).join(
            latest, (StoredEventRow.device == latest.c.device) & (StoredEventRow.ts == latest.c.ts)
        )
    )
    for device, kind, ts in events:
        if (heard := floor.desks.get(device)) is not None:
            heard.presence, heard.changed_at = kind, ts
    floor.recount()
    day = datetime.combine(now.astimezone(site.tzinfo).date(), time(), tzinfo=site.tzinfo)
    bookings = session.scalars(
        select(BookingRow).where(
            BookingRow.site_id == site.id,
            BookingRow.desk_id.is_not(None),
            BookingRow.starts_at < (day + timedelta(days=1)).astimezone(UTC),
            BookingRow.ends_at > day.astimezone(UTC),
            or_(
                BookingRow.status == BookingStatus.BOOKED,
                BookingRow.status == BookingStatus.NO_SHOW,
            ),
        )
    )
    for booking in bookings:
        if (held := by_id.get(booking.desk_id or 0)) is not None:
            if booking.status is BookingStatus.NO_SHOW:
                held.no_show = True
            else:
                held.booked = True
    return floor


@dataclass(frozen=True)
class _Subscriber:
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue[Change | None]


class LiveHub:
    """Every site's live floor, fed by MQTT and broadcast to subscribers."""

    CHANNELS = (Channel.PRESENCE, Channel.DOOR_EVENT, Channel.TAP, Channel.STATUS)

    def __init__(
        self,
        sessions: sessionmaker[Session],
        options: MqttOptions,
        *,
        site: str = "+",
        follow_presence: bool = True,
        on_status: Callable[[Message], None] | None = None,
    ) -> None:
        """`site`: follow only that site's topics (`+`: all). `follow_presence=False`:
        presence comes from this process's ingestion through `take` instead, which
        spares a second decode of the busiest channel when one process ingests all.
        `on_status` is told every agent status (the health metrics and points)."""
        self._sessions = sessions
        self.on_status = on_status
        self._lock = threading.Lock()
        self._floors: dict[str, SiteFloor] = {}
        self._subscribers: set[_Subscriber] = set()
        self._links: dict[tuple[str, str], AgentLink] = {}
        """Each (site, agent)'s last status; kept across `reload`, which redraws floors."""
        self.bad: dict[str, int] = {}
        """Messages that broke the contract, dropped, by reason."""
        self._refusals = RefusalLog(log, "live message")
        self._connection = ServerConnection(
            options,
            name="live",
            subscriptions=[
                (topic_filter(c, site=site), 0)
                for c in self.CHANNELS
                if follow_presence or c is not Channel.PRESENCE
            ],
            handler=self._on_message,
        )

    @property
    def connected(self) -> bool:
        return self._connection.connected

    def start(self, timeout: float = 10.0) -> None:
        """Seed every site from SQL, then follow MQTT (TimeoutError if the broker is away)."""
        self.reload()
        self._connection.start(timeout)

    def stop(self) -> None:
        """Disconnect and end every subscriber's stream."""
        self._connection.stop()
        self._refusals.flush()
        with self._lock:
            subscribers = list(self._subscribers)
            self._subscribers.clear()
        for subscriber in subscribers:
            _hand_over(subscriber, None)

    def site_changed(self, site: str) -> None:  # noqa: ARG002 - one reload serves every site
        """A RegistryListener: bookings, desks or releases changed; redraw from SQL."""
        self.reload()

    def reload(self, now: datetime | None = None) -> None:
        """Rebuild every site's floor from SQL (the registry, bookings or check-ins
        changed); subscribers are handed each desk that now reads differently."""
        when = now or datetime.now(UTC)
        with self._sessions() as session:
            floors = {
                site.slug: load_floor(session, site, now=when)
                for site in session.scalars(select(SiteRow).order_by(SiteRow.slug))
            }
        with self._lock:
            previous, self._floors = self._floors, floors
            changes = _redrawn(previous, floors)
            subscribers = list(self._subscribers) if changes else []
        for subscriber in subscribers:
            for change in changes:
                _hand_over(subscriber, change)

    def sites(self) -> list[str]:
        with self._lock:
            return sorted(self._floors)

    def snapshot(self, site: str) -> Change | None:
        """A site's floor as JSON, or None for a site the hub does not know."""
        with self._lock:
            floor = self._floors.get(site)
            return None if floor is None else floor.as_json()

    def agent_links(self, site: str) -> dict[str, AgentLink]:
        """The agents of `site` heard from, by id: online or not since when."""
        with self._lock:
            return {agent: link for (at, agent), link in self._links.items() if at == site}

    def subscribe(self) -> asyncio.Queue[Change | None]:
        """A queue of every change, fed on the running loop; None ends it. Unsubscribe after."""
        subscriber = _Subscriber(asyncio.get_running_loop(), asyncio.Queue(QUEUE_SIZE))
        with self._lock:
            self._subscribers.add(subscriber)
        return subscriber.queue

    def unsubscribe(self, queue: asyncio.Queue[Change | None]) -> None:
        with self._lock:
            self._subscribers = {s for s in self._subscribers if s.queue is not queue}

    def _on_message(self, _client: mqtt.Client, msg: mqtt.MQTTMessage) -> None:
        try:
            message = decode(msg.topic, msg.payload)
        except ContractError as exc:
            reason = exc.reason.value
            self.bad[reason] = self.bad.get(reason, 0) + 1
            self._refusals.refused(reason, msg.topic, exc.detail)
            return
        if self.on_status is not None and isinstance(message.payload, Status):
            try:
                self.on_status(message)
            except Exception:
                log.exception("live: the status hook failed on %s", msg.topic)
        self.publish(message)

    def take(self, messages: Iterable[Message]) -> None:
        """Apply the presence events ingestion has just stored (see `follow_presence`)."""
        self.publish_all(m for m in messages if m.topic.channel is Channel.PRESENCE)

    def publish(self, message: Message) -> None:
        """Apply a decoded message and hand its changes to every subscriber."""
        self.publish_all((message,))

    def publish_all(self, messages: Iterable[Message]) -> None:
        """`publish` each message, under one hold of the lock (ingestion's batches)."""
        changes: list[Change] = []
        now = datetime.now(UTC)
        with self._lock:
            for message in messages:
                if isinstance(status := message.payload, Status):
                    self._link(message.topic.site, message.topic.agent, status, now)
                floor = self._floors.get(message.topic.site)
                if floor is not None:
                    changes += floor.apply(message)
            subscribers = list(self._subscribers) if changes else []
        for subscriber in subscribers:
            for change in changes:
                _hand_over(subscriber, change)

    def _link(self, site: str, agent: str, status: Status, now: datetime) -> None:
        online = status.state == "online"
        known = self._links.get((site, agent))
        if known is not None and known.online == online and known.reported_at == status.ts:
            return  # the same status again (a retained copy): keep when it was first heard
        self._links[(site, agent)] = AgentLink(online=online, reported_at=status.ts, heard_at=now)


def _redrawn(before: dict[str, SiteFloor], after: dict[str, SiteFloor]) -> list[Change]:
    """A desk change for each desk of `after` whose JSON differs from its `before`'s
    (a booking made or cancelled, a check-in): what a reload shows the open pages."""
    changes = []
    for slug, floor in after.items():
        old = before.get(slug)
        if old is None:
            continue
        for desk in floor.desks.values():
            was = old.desks.get(desk.slug)
            if was is None or was.as_json() != desk.as_json():
                changes.append(floor._desk_change(desk))
    return changes


def _hand_over(subscriber: _Subscriber, change: Change | None) -> None:
    """Put `change` on the subscriber's queue from any thread, on the subscriber's loop."""
    with contextlib.suppress(RuntimeError):  # its loop is closed: the page is gone
        subscriber.loop.call_soon_threadsafe(_put, subscriber.queue, change)


def _put(queue: asyncio.Queue[Change | None], change: Change | None) -> None:
    try:
        queue.put_nowait(change)
    except asyncio.QueueFull:
        log.warning("live: a page fell %s changes behind; a change was dropped", QUEUE_SIZE)
