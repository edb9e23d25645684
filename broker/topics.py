"""Topic builders and parsers: the topic table of docs/contract.md.

Every topic starts `ruche/v1/{site}/{agent}/`, so one ACL pattern confines an
agent to its own subtree. Nothing outside this module writes a topic string.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from enum import StrEnum

from ruche.broker.errors import ContractError, Reason

ROOT = "ruche"
VERSION = "v1"
MAX_TOPIC_LENGTH = 512

ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
"""Site, agent, desk and door ids: no MQTT wildcards, separators or `$`, at most 64 characters."""

_ID = re.compile(ID_PATTERN)


class Channel(StrEnum):
    """The kinds of message the contract carries, one per topic shape."""

    STATUS = "status"
    PRESENCE = "presence"
    DESK_BADGE = "desk_badge"
    TAP = "tap"
    DOOR_EVENT = "door_event"
    CMD = "cmd"
    ALLOWLIST = "allowlist"
    ACK = "ack"
    CONFIG = "config"


# The path after `ruche/v1/{site}/{agent}/`; `{id}` is the desk or door id.
_LAYOUT: dict[Channel, tuple[str, ...]] = {
    Channel.STATUS: ("status",),
    Channel.PRESENCE: ("desk", "{id}", "presence"),
    Channel.DESK_BADGE: ("desk", "{id}", "badge"),
    Channel.TAP: ("door", "{id}", "tap"),
    Channel.DOOR_EVENT: ("door", "{id}", "event"),
    Channel.CMD: ("cmd",),
    Channel.ALLOWLIST: ("allowlist",),
    Channel.ACK: ("ack",),
    Channel.CONFIG: ("config",),
}

AGENT_CHANNELS: frozenset[Channel] = frozenset(
    {Channel.STATUS, Channel.PRESENCE, Channel.DESK_BADGE, Channel.TAP, Channel.DOOR_EVENT}
)
"""Channels an agent publishes on; the server publishes the others to the agent."""

SERVER_CHANNELS: frozenset[Channel] = frozenset(set(Channel) - AGENT_CHANNELS)

EVENT_CHANNELS: frozenset[Channel] = frozenset(
    {Channel.PRESENCE, Channel.DESK_BADGE, Channel.TAP, Channel.DOOR_EVENT}
)
"""Agent channels whose payloads carry `(agent, seq)` and go through the outbox."""

_DEVICE_CHANNELS = frozenset(c for c, parts in _LAYOUT.items() if "{id}" in parts)


def check_id(value: str, what: str = "id") -> str:
    """Return `value` if it is a valid site, agent, desk or door id, else raise ContractError."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ContractError(
            Reason.BAD_TOPIC,
            f"{what} {value!r} is not valid: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit",
        )
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    """One concrete topic of the contract; `str(topic)` is what goes on the wire."""

    site: str
    agent: str
    channel: Channel
    device: str | None = None
    """The desk id (presence, desk badge) or door id (tap, door event); None otherwise."""

    def __post_init__(self) -> None:
        check_id(self.site, "site")
        check_id(self.agent, "agent")
        if self.channel in _DEVICE_CHANNELS:
            if self.device is None:
                raise ContractError(Reason.BAD_TOPIC, f"{self.channel} topics need a device id")
            check_id(self.device, "device")
        elif self.device is not None:
            raise ContractError(Reason.BAD_TOPIC, f"{self.channel} topics take no device id")

    def __str__(self) -> str:
        device = self.device or ""
        tail = "/".join(device if p == "{id}" else p for p in _LAYOUT[self.channel])
        return f"{ROOT}/{VERSION}/{self.site}/{self.agent}/{tail}"

    @classmethod
    def parse(cls, topic: str) -> Topic:
        """Parse a wire topic; raise ContractError with the reason when it is not one of ours."""
        if not isinstance(topic, str):
            raise ContractError(Reason.BAD_TOPIC, f"topic must be a string, not {type(topic)}")
        return _parse_topic(topic)

    @classmethod
    def _parse(cls, topic: str) -> Topic:
        if len(topic) > MAX_TOPIC_LENGTH:
            raise ContractError(Reason.BAD_TOPIC, f"topic longer than {MAX_TOPIC_LENGTH}")
        parts = topic.split("/")
        if len(parts) < 5 or parts[0] != ROOT:
            raise ContractError(
                Reason.BAD_TOPIC, f"{topic!r} is not a {ROOT}/{VERSION}/site/agent/... topic"
            )
        if parts[1] != VERSION:
            raise ContractError(
                Reason.UNSUPPORTED_VERSION, f"topic version {parts[1]!r}, expected {VERSION!r}"
            )
        site, agent, tail = parts[2], parts[3], parts[4:]
        for channel, layout in _LAYOUT.items():
            if len(layout) != len(tail):
                continue
            if all(p in ("{id}", t) for p, t in zip(layout, tail, strict=True)):
                device = tail[layout.index("{id}")] if "{id}" in layout else None
                return cls(site=site, agent=agent, channel=channel, device=device)
        raise ContractError(Reason.BAD_TOPIC, f"{topic!r} matches no channel of the contract")

    # Builders, one per row of the contract table.

    @classmethod
    def status(cls, site: str, agent: str) -> Topic:
        return cls(site, agent, Channel.STATUS)

    @classmethod
    def presence(cls, site: str, agent: str, desk: str) -> Topic:
        return cls(site, agent, Channel.PRESENCE, desk)

    @classmethod
    def desk_badge(cls, site: str, agent: str, desk: str) -> Topic:
        return cls(site, agent, Channel.DESK_BADGE, desk)

    @classmethod
    def tap(cls, site: str, agent: str, door: str) -> Topic:
        return cls(site, agent, Channel.TAP, door)

    @classmethod
    def door_event(cls, site: str, agent: str, door: str) -> Topic:
        return cls(site, agent, Channel.DOOR_EVENT, door)

    @classmethod
    def cmd(cls, site: str, agent: str) -> Topic:
        return cls(site, agent, Channel.CMD)

    @classmethod
    def allowlist(cls, site: str, agent: str) -> Topic:
        return cls(site, agent, Channel.ALLOWLIST)

    @classmethod
    def ack(cls, site: str, agent: str) -> Topic:
        return cls(site, agent, Channel.ACK)

    @classmethod
    def config(cls, site: str, agent: str) -> Topic:
        return cls(site, agent, Channel.CONFIG)


def topic_filter(channel: Channel, *, site: str = "+", agent: str = "+") -> str:
    """A subscription filter for one channel; `+` stands for any site, agent or device.

    >>> topic_filter(Channel.PRESENCE)
    'ruche/v1/+/+/desk/+/presence'
    """
    for value, what in ((site, "site"), (agent, "agent")):
        if value != "+":
            check_id(value, what)
    tail = "/".join("+" if p == "{id}" else p for p in _LAYOUT[channel])
    return f"{ROOT}/{VERSION}/{site}/{agent}/{tail}"


def agent_subtree(site: str, agent: str) -> str:
    """The filter for everything under one agent: `ruche/v1/{site}/{agent}/#`."""
    return f"{ROOT}/{VERSION}/{check_id(site, 'site')}/{check_id(agent, 'agent')}/#"


def everything() -> str:
    """The filter for every topic of this contract version."""
    return f"{ROOT}/{VERSION}/#"


def shared(group: str, topic_filter: str) -> str:
    """A shared subscription (`$share/{group}/{filter}`): one delivery per group, load spread."""
    check_id(group, "share group")
    return f"$share/{group}/{topic_filter}"


@functools.lru_cache(maxsize=65_536)
def _parse_topic(topic: str) -> Topic:
    """`Topic.parse`, remembered: a site's topics repeat on every event, and parsing
    each again was a tenth of ingestion's time per message. Errors are not cached."""
    return Topic._parse(topic)
