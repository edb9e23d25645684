"""Alarms a site's staff see and acknowledge: doors forced or held open, agents offline.

```python
board = alarm_board(session, site, links=hub.agent_links(site.slug), now=now)
board.open          # newest first, none acknowledged
acknowledge(session, key=board.open[0].key, site=site, actor=reader.actor, now=now)
```

A door alarm is an `alarm` row of the audit log (reason `forced` or `held_open`, written
by the door event worker); an agent alarm is an agent whose last status says offline, as
the live hub heard it (`links`: any mapping of agent id to a value with `online`,
`reported_at` and `heard_at`). Each has a key, the one `AlarmAckRow.alarm` stores:
`audit:<id>` for a door alarm, `agent:<site>/<agent>:<since>` for one offline spell of an
agent (`since`: its status's own time, UTC to the second, the same in every process).

Acknowledging records who and when once (`AlarmAckRow`) and appends an `alarm_ack` row
to the audit log naming the alarm, in the caller's transaction; acknowledging again
changes nothing. An agent back online is no longer an open alarm, acknowledged or not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Final, Protocol

from sqlalchemy import String, cast, exists, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ruche.broker.topics import ID_PATTERN
from ruche.server.access import audit
from ruche.server.errors import Invalid, NotFound
from ruche.server.storage.enums import AuditKind, AuditSource
from ruche.server.storage.models import AgentRow, AlarmAckRow, AuditRow, SiteRow

__all__ = [
    "Ack",
    "AgentAlarmKey",
    "Alarm",
    "AlarmBoard",
    "AlarmKind",
    "DoorAlarmKey",
    "Link",
    "acknowledge",
    "actor_name",
    "agent_key",
    "alarm_board",
    "door_key",
    "offline_alarms",
    "parse_key",
]

MAX_OPEN: Final = 200
"""Open door alarms a board lists (the newest): more is a site to go and look at."""
MAX_ACKNOWLEDGED: Final = 20
"""Acknowledged alarms a board lists, the latest acknowledged first."""
_DOOR_KEY: Final = re.compile(r"audit:([1-9][0-9]{0,18})")
_AGENT_KEY: Final = re.compile(
    rf"agent:({ID_PATTERN})/({ID_PATTERN}):([0-9]{{4}}-[0-9]{{2}}-[0-9]{{2}}T[0-9:]{{8}}Z)"
)
_SINCE: Final = "%Y-%m-%dT%H:%M:%SZ"
_MAX_ID: Final = 2**63 - 1
"""The largest audit row id SQL holds (BIGINT)."""


class AlarmKind(StrEnum):
    FORCED = "forced"
    HELD_OPEN = "held_open"
    AGENT_OFFLINE = "agent_offline"


class Link(Protocol):
    """An agent's last status, as the live hub keeps it (`ruche.server.occupancy.live`)."""

    @property
    def online(self) -> bool: ...
    @property
    def reported_at(self) -> datetime: ...
    @property
    def heard_at(self) -> datetime: ...


@dataclass(frozen=True, kw_only=True)
class Ack:
    by: str
    """`Principal.actor` of who acknowledged it."""
    at: datetime


@dataclass(frozen=True, kw_only=True)
class Alarm:
    key: str
    kind: AlarmKind
    site: str
    at: datetime
    """When it happened: the agent's time for a door alarm, when the server heard an
    agent go offline."""
    door: str | None = None
    agent: str | None = None
    ack: Ack | None = None


@dataclass(frozen=True)
class AlarmBoard:
    open: list[Alarm]
    """Not acknowledged, newest first."""
    acknowledged: list[Alarm]
    """The latest acknowledged, latest acknowledgement first."""


@dataclass(frozen=True)
class DoorAlarmKey:
    audit_id: int


@dataclass(frozen=True)
class AgentAlarmKey:
    site: str
    agent: str
    since: datetime


# --- the pure part -----------------------------------------------------------------------


def door_key(audit_id: int) -> str:
    """The key of the door alarm logged as audit row `audit_id`.

    >>> door_key(42)
    'audit:42'
    """
    return f"audit:{audit_id}"


def agent_key(site: str, agent: str, since: datetime) -> str:
    """The key of `agent`'s offline spell that its status of time `since` began.

    >>> agent_key("lyon", "a1", datetime(2026, 12, 7, 23, 5, 9, 500, tzinfo=UTC))
    'agent:lyon/a1:2026-12-07T23:05:09Z'
    """
    if since.tzinfo is None or since.utcoffset() is None:
        raise Invalid(f"an agent's status time {since.isoformat()} has no timezone")
    return f"agent:{site}/{agent}:{since.astimezone(UTC).strftime(_SINCE)}"


def parse_key(key: str) -> DoorAlarmKey | AgentAlarmKey:
    """The alarm `key` names; Invalid for anything that is not a key.

    >>> parse_key("audit:7"), parse_key("agent:lyon/a1:2026-12-07T23:05:09Z").agent
    (DoorAlarmKey(audit_id=7), 'a1')
    """
    if (door := _DOOR_KEY.fullmatch(key)) and int(door[1]) <= _MAX_ID:
        return DoorAlarmKey(int(door[1]))
    if agent := _AGENT_KEY.fullmatch(key):
        try:
            since = datetime.strptime(agent[3], _SINCE).replace(tzinfo=UTC)
        except ValueError:
            pass
        else:
            return AgentAlarmKey(agent[1], agent[2], since)
    raise Invalid(f"{key[:80]!r} is not an alarm: ask for the alarms page again")


def offline_alarms(site: str, links: Mapping[str, Link], agents: Iterable[str]) -> list[Alarm]:
    """An alarm for each of `agents` (the site's, in the registry) whose last status
    says offline, newest first; an agent never heard from raises none."""
    alarms = [
        Alarm(
            key=agent_key(site, agent, link.reported_at),
            kind=AlarmKind.AGENT_OFFLINE,
            site=site,
            at=link.heard_at,
            agent=agent,
        )
        for agent in set(agents)
        if (link := links.get(agent)) is not None and not link.online
    ]
    return sorted(alarms, key=lambda alarm: (alarm.at, alarm.key), reverse=True)


def actor_name(actor: str) -> str:
    """Who an actor (`Principal.actor`) is, for a reader: a person's or a key's name.

    >>> actor_name("person:3:max@example.org"), actor_name("cli")
    ('max@example.org', 'cli')
    """
    kind, _, rest = actor.partition(":")
    number, _, name = rest.partition(":")
    return name if kind in ("person", "api-key") and number.isdigit() and name else actor


def ack_reason(alarm: Alarm) -> str:
    """What the `alarm_ack` row's reason says: the alarm's kind and which one (at most
    64 characters, the column's size).

    >>> ack_reason(Alarm(key="audit:9", kind=AlarmKind.FORCED, site="lyon",
    ...                  at=datetime(2026, 12, 7, tzinfo=UTC), door="front"))
    'forced #9'
    """
    match parse_key(alarm.key):
        case DoorAlarmKey(audit_id):
            return f"{alarm.kind.value} #{audit_id}"
        case AgentAlarmKey(since=since):
            return f"{alarm.kind.value} {since.strftime(_SINCE)}"


def _door_alarm(row: AuditRow, ack: Ack | None = None) -> Alarm:
    kind = AlarmKind.HELD_OPEN if row.reason == AlarmKind.HELD_OPEN else AlarmKind.FORCED
    return Alarm(key=door_key(row.id), kind=kind, site=row.site, at=row.decided_at,
                 door=row.door, agent=row.agent, ack=ack)  # fmt: skip


# --- the shell ---------------------------------------------------------------------------


def _acked(key: object) -> object:
    return exists().where(AlarmAckRow.alarm == key)


def _audit_key() -> object:
    return literal("audit:") + cast(AuditRow.id, String)


def site_agents(session: Session, site: SiteRow) -> list[str]:
    """The ids of the site's agents in the registry."""
    return list(session.scalars(select(AgentRow.slug).where(AgentRow.site_id == site.id)))


def alarm_board(
    session: Session, site: SiteRow, *, links: Mapping[str, Link], limit: int = MAX_OPEN
) -> AlarmBoard:
    """The site's open alarms (door alarms not acknowledged, agents offline and not
    acknowledged) and the latest acknowledged ones."""
    doors = session.scalars(
        select(AuditRow)
        .where(AuditRow.kind == AuditKind.ALARM, AuditRow.site == site.slug)
        .where(~_acked(_audit_key()))  # type: ignore[operator]
        .order_by(AuditRow.id.desc())
        .limit(limit)
    )
    offline = offline_alarms(site.slug, links, site_agents(session, site))
    acks = _acks(session, [alarm.key for alarm in offline])
    opened = [_door_alarm(row) for row in doors] + [a for a in offline if a.key not in acks]
    opened.sort(key=lambda alarm: (alarm.at, alarm.key), reverse=True)
    return AlarmBoard(open=opened, acknowledged=_acknowledged(session, site))


def _acks(session: Session, keys: list[str]) -> dict[str, Ack]:
    if not keys:
        return {}
    rows = session.scalars(select(AlarmAckRow).where(AlarmAckRow.alarm.in_(keys)))
    return {row.alarm: Ack(by=row.acknowledged_by, at=row.acknowledged_at) for row in rows}


def _acknowledged(session: Session, site: SiteRow) -> list[Alarm]:
    rows = list(
        session.scalars(
            select(AlarmAckRow)
            .where(AlarmAckRow.site == site.slug)
            .order_by(AlarmAckRow.acknowledged_at.desc(), AlarmAckRow.id.desc())
            .limit(MAX_ACKNOWLEDGED)
        )
    )
    keys = {row.alarm: parse_key(row.alarm) for row in rows}
    ids = [key.audit_id for key in keys.values() if isinstance(key, DoorAlarmKey)]
    logged = {row.id: row for row in session.scalars(select(AuditRow).where(AuditRow.id.in_(ids)))}
    alarms = []
    for row in rows:
        ack = Ack(by=row.acknowledged_by, at=row.acknowledged_at)
        match keys[row.alarm]:
            case DoorAlarmKey(audit_id) if audit_id in logged:
                alarms.append(_door_alarm(logged[audit_id], ack))
            case AgentAlarmKey(agent=agent, since=since):
                alarms.append(Alarm(key=row.alarm, kind=AlarmKind.AGENT_OFFLINE,
                                    site=site.slug, at=since, agent=agent, ack=ack))  # fmt: skip
    return alarms


def find_alarm(session: Session, site: SiteRow, key: str) -> Alarm:
    """The alarm `key` names at `site`: NotFound for one of another site, as for one
    that does not exist (a manager learns nothing of other sites)."""
    parsed = parse_key(key)
    if isinstance(parsed, DoorAlarmKey):
        row = session.get(AuditRow, parsed.audit_id)
        if row is None or row.kind is not AuditKind.ALARM or row.site != site.slug:
            raise NotFound("alarm", key)
        return _door_alarm(row)
    if parsed.site != site.slug or parsed.agent not in site_agents(session, site):
        raise NotFound("alarm", key)
    return Alarm(key=key, kind=AlarmKind.AGENT_OFFLINE, site=site.slug, at=parsed.since,
                 agent=parsed.agent)  # fmt: skip


def acknowledge(session: Session, *, key: str, site: SiteRow, actor: str, now: datetime) -> Ack:
    """Record that `actor` acknowledged alarm `key` of `site` at `now`, with its
    `alarm_ack` row in the audit log, in the caller's transaction. An alarm already
    acknowledged keeps its first acknowledgement (returned), and logs nothing more."""
    alarm = find_alarm(session, site, key)
    known = _acks(session, [key])
    if key in known:
        return known[key]
    row = AlarmAckRow(alarm=key, site=site.slug, acknowledged_by=actor[:100],
                      acknowledged_at=now)  # fmt: skip
    try:
        with session.begin_nested():  # a savepoint: a lost race leaves the transaction usable
            session.add(row)
    except IntegrityError:
        return _acks(session, [key])[key]  # acknowledged at the same moment elsewhere
    audit.append(
        session,
        audit.AuditEntry(
            kind=AuditKind.ALARM_ACK,
            source=AuditSource.API,
            site=site.slug,
            agent=alarm.agent,
            door=alarm.door,
            reason=ack_reason(alarm),
            actor=actor,
            decided_at=now,
            received_at=now,
        ),
    )
    return Ack(by=row.acknowledged_by, at=row.acknowledged_at)
