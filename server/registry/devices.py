"""What a site is made of: zones, the agents (Pis) and the desks and doors they read and drive."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.broker import DeskSensor, DoorHardware
from ruche.broker.passwords import generate_password, hash_password
from ruche.server.errors import Invalid, NotFound
from ruche.server.registry.agent_config import check_agent_wiring, wiring_json
from ruche.server.registry.base import UNSET, _savepoint, _Unset, _update, check_slug, get
from ruche.server.storage.models import (
    AgentRow,
    DeskRow,
    DoorRow,
    SiteRow,
    ZoneRow,
)


def create_zone(session: Session, *, site_id: int, name: str) -> ZoneRow:
    get(session, SiteRow, site_id)
    if not name.strip():
        raise Invalid("a zone needs a name")
    zone = ZoneRow(site_id=site_id, name=name)
    with _savepoint(session, f"zone {name!r} already exists at site {site_id}"):
        session.add(zone)
    return zone


def list_zones(session: Session, site_id: int) -> list[ZoneRow]:
    return list(
        session.scalars(select(ZoneRow).where(ZoneRow.site_id == site_id).order_by(ZoneRow.id))
    )


def update_zone(session: Session, zone_id: int, *, name: str) -> ZoneRow:
    zone = get(session, ZoneRow, zone_id)
    _update(session, zone, f"zone {name!r} already exists", {"name": name})
    return zone


def create_agent(session: Session, *, site_id: int, slug: str) -> AgentRow:
    get(session, SiteRow, site_id)
    check_slug(slug, "agent id")
    agent = AgentRow(site_id=site_id, slug=slug)
    with _savepoint(session, f"agent {slug!r} already exists at site {site_id}"):
        session.add(agent)
    return agent


def issue_agent_password(session: Session, agent_id: int) -> str:
    """Give an agent a new random broker password; returns it (the only time it is seen).

    Only Mosquitto's hash is stored; `ruche broker config` writes it to the broker's accounts.
    """
    agent = get(session, AgentRow, agent_id)
    password = generate_password()
    agent.mqtt_password_hash = hash_password(password)
    return password


def list_agents(session: Session, site_id: int | None = None) -> list[AgentRow]:
    query = select(AgentRow).order_by(AgentRow.id)
    if site_id is not None:
        query = query.where(AgentRow.site_id == site_id)
    return list(session.scalars(query))


def get_agent_by_slug(session: Session, site_id: int, slug: str) -> AgentRow:
    query = select(AgentRow).where(AgentRow.site_id == site_id, AgentRow.slug == slug)
    agent = session.scalars(query).one_or_none()
    if agent is None:
        raise NotFound("Agent", f"{site_id}/{slug}")
    return agent


def _check_agent(session: Session, agent_id: int | None, site_id: int) -> None:
    if agent_id is not None and get(session, AgentRow, agent_id).site_id != site_id:
        raise Invalid(f"agent {agent_id} is at another site: an agent serves its own site only")


def create_desk(
    session: Session,
    *,
    zone_id: int,
    slug: str,
    agent_id: int | None = None,
    x: int | None = None,
    y: int | None = None,
    wiring: DeskSensor | None = None,
) -> DeskRow:
    """A desk in a zone (and so at the zone's site), optionally read by an agent through
    the sensor `wiring` says."""
    zone = get(session, ZoneRow, zone_id)
    check_slug(slug, "desk id")
    _check_agent(session, agent_id, zone.site_id)
    desk = DeskRow(site_id=zone.site_id, zone_id=zone_id, slug=slug, agent_id=agent_id, x=x, y=y,
                   wiring=wiring_json(wiring))  # fmt: skip
    with _savepoint(session, f"desk {slug!r} already exists at site {zone.site_id}"):
        session.add(desk)
    check_agent_wiring(session, desk.agent_id)
    return desk


def list_desks(
    session: Session, *, site_id: int | None = None, zone_id: int | None = None
) -> list[DeskRow]:
    query = select(DeskRow).order_by(DeskRow.id)
    if site_id is not None:
        query = query.where(DeskRow.site_id == site_id)
    if zone_id is not None:
        query = query.where(DeskRow.zone_id == zone_id)
    return list(session.scalars(query))


def update_desk(
    session: Session,
    desk_id: int,
    *,
    slug: str | _Unset = UNSET,
    zone_id: int | _Unset = UNSET,
    agent_id: int | _Unset | None = UNSET,
    x: int | _Unset | None = UNSET,
    y: int | _Unset | None = UNSET,
    wiring: DeskSensor | _Unset | None = UNSET,
) -> DeskRow:
    """Change a desk; it may move to another zone of the same site only."""
    desk = get(session, DeskRow, desk_id)
    if not isinstance(slug, _Unset):
        check_slug(slug, "desk id")
    if not isinstance(zone_id, _Unset) and get(session, ZoneRow, zone_id).site_id != desk.site_id:
        raise Invalid(f"zone {zone_id} is at another site: a desk moves within its site")
    if not isinstance(agent_id, _Unset):
        _check_agent(session, agent_id, desk.site_id)
    _update(
        session,
        desk,
        f"desk {slug!r} already exists",
        {
            "slug": slug,
            "zone_id": zone_id,
            "agent_id": agent_id,
            "x": x,
            "y": y,
            "wiring": wiring if isinstance(wiring, _Unset) else wiring_json(wiring),
        },
    )
    check_agent_wiring(session, desk.agent_id)
    return desk


def create_door(
    session: Session,
    *,
    site_id: int,
    slug: str,
    name: str = "",
    agent_id: int | None = None,
    anti_passback: bool = False,
    wiring: DoorHardware | None = None,
) -> DoorRow:
    get(session, SiteRow, site_id)
    check_slug(slug, "door id")
    _check_agent(session, agent_id, site_id)
    door = DoorRow(
        site_id=site_id,
        slug=slug,
        name=name,
        agent_id=agent_id,
        anti_passback=anti_passback,
        locked_down=False,
        wiring=wiring_json(wiring),
    )
    with _savepoint(session, f"door {slug!r} already exists at site {site_id}"):
        session.add(door)
    check_agent_wiring(session, door.agent_id)
    return door


def list_doors(
    session: Session, *, site_id: int | None = None, agent_id: int | None = None
) -> list[DoorRow]:
    query = select(DoorRow).order_by(DoorRow.id)
    if site_id is not None:
        query = query.where(DoorRow.site_id == site_id)
    if agent_id is not None:
        query = query.where(DoorRow.agent_id == agent_id)
    return list(session.scalars(query))


def get_door_by_slug(session: Session, site_id: int, slug: str) -> DoorRow:
    door = session.scalars(
        select(DoorRow).where(DoorRow.site_id == site_id, DoorRow.slug == slug)
    ).one_or_none()
    if door is None:
        raise NotFound("Door", f"{site_id}/{slug}")
    return door


def update_door(
    session: Session,
    door_id: int,
    *,
    name: str | _Unset = UNSET,
    agent_id: int | _Unset | None = UNSET,
    anti_passback: bool | _Unset = UNSET,
    locked_down: bool | _Unset = UNSET,
    wiring: DoorHardware | _Unset | None = UNSET,
) -> DoorRow:
    door = get(session, DoorRow, door_id)
    if not isinstance(agent_id, _Unset):
        _check_agent(session, agent_id, door.site_id)
    _update(
        session,
        door,
        "door update clashes",
        {
            "name": name,
            "agent_id": agent_id,
            "anti_passback": anti_passback,
            "locked_down": locked_down,
            "wiring": wiring if isinstance(wiring, _Unset) else wiring_json(wiring),
        },
    )
    check_agent_wiring(session, door.agent_id)
    return door


def set_site_lockdown(session: Session, site_id: int, *, locked_down: bool) -> list[DoorRow]:
    """Lock down (or release) every door of a site; returns the doors."""
    doors = list_doors(session, site_id=get(session, SiteRow, site_id).id)
    for door in doors:
        door.locked_down = locked_down
    session.flush()
    return doors
