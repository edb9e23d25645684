"""What an agent runs, as the registry says: its wired doors and desks, as the contract's
`AgentConfig` (published retained by `ruche.server.registry.config_publisher`).

A door or desk is in its agent's config once it has an agent and a wiring (`wiring`
column: the contract's `DoorHardware` or `DeskSensor` as JSON). Every write that changes
either checks the agent's whole set with the contract's own rule (`check_setup`: unique
ids, no pin or serial port used twice), so the registry never holds a config the agent
would have to refuse for that reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.broker import AgentConfig, DeskSensor, DeskSetup, DoorHardware, DoorSetup
from ruche.broker.payloads import check_setup
from ruche.server.errors import Invalid
from ruche.server.storage.models import AgentRow, DeskRow, DoorRow, SiteRow

Setup = tuple[tuple[DoorSetup, ...], tuple[DeskSetup, ...]]
"""An agent's doors and desks, each sorted by id."""


def wiring_json(wiring: DoorHardware | DeskSensor | None) -> dict[str, object] | None:
    """The `wiring` column's value: the contract's fields, without the schema version."""
    return None if wiring is None else wiring.model_dump(mode="json", exclude={"v"})


def door_wiring(door: DoorRow) -> DoorHardware | None:
    """A door's wiring as the contract types it; None when it has none."""
    return None if door.wiring is None else DoorHardware.model_validate(door.wiring, strict=False)


def desk_wiring(desk: DeskRow) -> DeskSensor | None:
    """A desk's sensor as the contract types it; None when it has none."""
    return None if desk.wiring is None else DeskSensor.model_validate(desk.wiring, strict=False)


def _setup(doors: Iterable[DoorRow], desks: Iterable[DeskRow]) -> Setup:
    door_setups = tuple(
        DoorSetup.model_validate({**door.wiring, "id": door.slug}, strict=False)
        for door in sorted(doors, key=lambda d: d.slug)
        if door.wiring is not None
    )
    desk_setups = tuple(
        DeskSetup.model_validate({**desk.wiring, "id": desk.slug}, strict=False)
        for desk in sorted(desks, key=lambda d: d.slug)
        if desk.wiring is not None
    )
    return door_setups, desk_setups


def agent_setup(session: Session, agent_id: int) -> Setup:
    """One agent's wired doors and desks."""
    doors = session.scalars(select(DoorRow).where(DoorRow.agent_id == agent_id))
    desks = session.scalars(select(DeskRow).where(DeskRow.agent_id == agent_id))
    return _setup(doors, desks)


def site_setups(session: Session, site: str) -> dict[str, Setup]:
    """Every agent of site `site` (slug) and its wired doors and desks (empty if none)."""
    site_id = session.scalars(select(SiteRow.id).where(SiteRow.slug == site)).one_or_none()
    if site_id is None:
        return {}
    agents = {
        a.id: a.slug for a in session.scalars(select(AgentRow).where(AgentRow.site_id == site_id))
    }
    doors: dict[int, list[DoorRow]] = {agent: [] for agent in agents}
    desks: dict[int, list[DeskRow]] = {agent: [] for agent in agents}
    for door in session.scalars(select(DoorRow).where(DoorRow.site_id == site_id)):
        if door.agent_id in doors:
            doors[door.agent_id].append(door)
    for desk in session.scalars(select(DeskRow).where(DeskRow.site_id == site_id)):
        if desk.agent_id in desks:
            desks[desk.agent_id].append(desk)
    return {slug: _setup(doors[agent], desks[agent]) for agent, slug in agents.items()}


def check_agent_wiring(session: Session, agent_id: int | None) -> None:
    """Invalid if agent `agent_id`'s doors and desks, as now written, clash (pins, ids)."""
    if agent_id is None:
        return
    session.flush()
    doors, desks = agent_setup(session, agent_id)
    try:
        check_setup(doors, desks)
    except ValueError as exc:
        agent = session.get(AgentRow, agent_id)
        name = agent_id if agent is None else agent.slug
        raise Invalid(f"agent {name}'s doors and desks clash: {exc}") from None


def build_config(setup: Setup, *, version: int, now: datetime) -> AgentConfig:
    """The `config` payload of one agent."""
    doors, desks = setup
    return AgentConfig(version=version, issued=now, doors=doors, desks=desks)
