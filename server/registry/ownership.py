"""Which agent may speak for which desk and door: the registry's assignment, checked on
every agent event before it counts.

The broker keeps an agent to its own topic subtree, `ruche/v1/{site}/{agent}/...`, but
the desk or door id inside that subtree is the agent's to choose. An agent (or whoever
holds its credentials) could report presence for a desk another agent reads, or alarms
for a door another agent drives; those must not become sessions, visits or audit rows.

    owners = DeviceOwners(sessions)
    refusal = owners.check(message.topic)   # None, or (reason, detail)

`SiteDevices.refusal` is the rule, pure; `DeviceOwners` keeps each site's assignment in
memory, read again after `ttl` seconds, and at once (at most every `retry_after` seconds)
before refusing, so a desk registered or moved a moment ago is not refused for long.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import Channel, Topic
from ruche.server.storage.models import AgentRow, DeskRow, DoorRow, SiteRow, ZoneRow

_DESK_CHANNELS = frozenset({Channel.PRESENCE, Channel.DESK_BADGE})
_DOOR_CHANNELS = frozenset({Channel.TAP, Channel.DOOR_EVENT})


class Refusal(StrEnum):
    """Why an agent's event was refused; also its label in the bad-message counters."""

    UNKNOWN_SITE = "unknown_site"
    UNKNOWN_DEVICE = "unknown_device"
    NOT_OWNER = "not_owner"


RefusalDetail = tuple[Refusal, str]


@dataclass(frozen=True)
class SiteDevices:
    """One site's desks and doors, each with the agent that reads or drives it (or None)."""

    desks: Mapping[str, str | None]
    doors: Mapping[str, str | None]

    def refusal(self, topic: Topic) -> RefusalDetail | None:
        """None when `topic`'s agent may report for its device; else the reason and a
        sentence for the log.

        >>> devices = SiteDevices(desks={"d1": "a", "d2": "b"}, doors={})
        >>> devices.refusal(Topic.presence("lyon", "a", "d1")) is None
        True
        >>> devices.refusal(Topic.presence("lyon", "a", "d2"))
        (<Refusal.NOT_OWNER: 'not_owner'>, 'desk d2 belongs to agent b, not a')
        """
        if topic.channel in _DESK_CHANNELS:
            kind, owners = "desk", self.desks
        elif topic.channel in _DOOR_CHANNELS:
            kind, owners = "door", self.doors
        else:
            return None
        device = topic.device or ""
        if device not in owners:
            return Refusal.UNKNOWN_DEVICE, f"{kind} {device} is not in the registry"
        owner = owners[device]
        if owner != topic.agent:
            held = "no agent" if owner is None else f"agent {owner}"
            return Refusal.NOT_OWNER, f"{kind} {device} belongs to {held}, not {topic.agent}"
        return None


def load_site_devices(session: Session, site: str) -> SiteDevices | None:
    """A site's desks and doors with their agents; None for a site the registry lacks."""
    site_id = session.scalar(select(SiteRow.id).where(SiteRow.slug == site))
    if site_id is None:
        return None
    desks = session.execute(
        select(DeskRow.slug, AgentRow.slug)
        .join(ZoneRow, ZoneRow.id == DeskRow.zone_id)
        .outerjoin(AgentRow, AgentRow.id == DeskRow.agent_id)
        .where(ZoneRow.site_id == site_id)
    )
    doors = session.execute(
        select(DoorRow.slug, AgentRow.slug)
        .outerjoin(AgentRow, AgentRow.id == DoorRow.agent_id)
        .where(DoorRow.site_id == site_id)
    )
    return SiteDevices(desks=dict(desks.all()), doors=dict(doors.all()))


@dataclass(frozen=True)
class _Loaded:
    devices: SiteDevices | None
    at: float


class DeviceOwners:
    """Each site's `SiteDevices`, cached; thread-safe. Reading the registry may raise
    (the database is down): the caller retries as it would any storage failure."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        ttl: float = 30.0,
        retry_after: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sessions = sessions
        self._ttl = ttl
        self._retry_after = retry_after
        self._clock = clock
        self._lock = threading.Lock()
        self._sites: dict[str, _Loaded] = {}

    def check(self, topic: Topic) -> RefusalDetail | None:
        """None when the event may count; else why not."""
        loaded = self._get(topic.site, max_age=self._ttl)
        refusal = _refusal(loaded, topic)
        if refusal is None:
            return None
        # The registry may have changed a moment ago: look again before refusing.
        loaded = self._get(topic.site, max_age=self._retry_after)
        return _refusal(loaded, topic)

    def site_changed(self, site: str) -> None:
        """`RegistryListener`: read `site` again at its next event."""
        with self._lock:
            self._sites.pop(site, None)

    def _get(self, site: str, *, max_age: float) -> _Loaded:
        now = self._clock()
        with self._lock:
            cached = self._sites.get(site)
        if cached is not None and now - cached.at < max_age:
            return cached
        with self._sessions() as session:
            loaded = _Loaded(load_site_devices(session, site), now)
        with self._lock:
            self._sites[site] = loaded
        return loaded


def _refusal(loaded: _Loaded, topic: Topic) -> RefusalDetail | None:
    if loaded.devices is None:
        return Refusal.UNKNOWN_SITE, f"site {topic.site} is not in the registry"
    return loaded.devices.refusal(topic)
