"""Zones, desks, doors and agents."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

from ruche.broker import DeskSensor, DoorHardware
from ruche.server.api.schemas.base import GridPosition, Label, Name, Page, RowId, Slug, _In, _Out


class ZoneCreate(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "meeting room"}]}
    )

    name: Name


class ZoneUpdate(_In):
    name: Name


class ZonePublic(_Out):
    id: int
    site_id: int
    name: str


class ZonesPublic(Page[ZonePublic]):
    pass


class AgentCreate(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"slug": "pi-2"}]})

    slug: Slug


class AgentPublic(_Out):
    id: int
    site_id: int
    slug: str


class AgentsPublic(Page[AgentPublic]):
    pass


class DoorWiring(DoorHardware):
    """How the door is wired to its agent's Pi; the agent takes it from its `config`."""

    model_config = ConfigDict(
        extra="forbid",
        strict=False,
        json_schema_extra={
            "examples": [{"reader": "usb", "relay_pin": 17, "contact_pin": 27, "exit_pin": 22}]
        },
    )

    v: Literal[1] = Field(default=1, exclude=True)


class DeskWiring(DeskSensor):
    """The desk's sensor on its agent's Pi: `serial` (an LD2410 radar) or `pir_pin`."""

    model_config = ConfigDict(
        extra="forbid",
        strict=False,
        json_schema_extra={"examples": [{"serial": "/dev/ttyUSB0"}, {"pir_pin": 5}]},
    )

    v: Literal[1] = Field(default=1, exclude=True)


class DeskCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"zone_id": 1, "slug": "d2", "x": 3, "y": 1}]},
    )

    zone_id: RowId
    slug: Slug
    agent_id: RowId | None = None
    x: GridPosition | None = None
    y: GridPosition | None = None
    wiring: DeskWiring | None = None


class DeskUpdate(_In):
    slug: Slug | None = None
    zone_id: RowId | None = None
    agent_id: RowId | None = None
    x: GridPosition | None = None
    y: GridPosition | None = None
    wiring: DeskWiring | None = Field(default=None, description="null: no longer wired.")


class DeskPublic(_Out):
    id: int
    site_id: int
    zone_id: int
    slug: str
    agent_id: int | None
    x: int | None
    y: int | None
    wiring: DeskWiring | None


class DesksPublic(Page[DeskPublic]):
    pass


class DoorCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"slug": "back", "name": "Back door", "agent_id": 1}]},
    )

    slug: Slug
    name: Label = ""
    agent_id: RowId | None = None
    anti_passback: bool = False
    wiring: DoorWiring | None = None


class DoorUpdate(_In):
    """Lockdown is not here: it has its own endpoints, which also command the agent."""

    name: Label | None = None
    agent_id: RowId | None = None
    anti_passback: bool | None = None
    wiring: DoorWiring | None = Field(default=None, description="null: no longer wired.")


class DoorPublic(_Out):
    id: int
    site_id: int
    slug: str
    name: str
    agent_id: int | None
    anti_passback: bool
    locked_down: bool
    wiring: DoorWiring | None


class DoorsPublic(Page[DoorPublic]):
    pass


class UnlockRequest(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ms": 3000}]})

    ms: int = Field(default=5000, ge=1, le=600_000, description="How long to release the strike.")


class UnlockPublic(BaseModel):
    door_id: int
    ms: int
    audit_id: int
