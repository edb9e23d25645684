"""Zones, desks, doors and agents."""

from __future__ import annotations

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

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


class DeskUpdate(_In):
    slug: Slug | None = None
    zone_id: RowId | None = None
    agent_id: RowId | None = None
    x: GridPosition | None = None
    y: GridPosition | None = None


class DeskPublic(_Out):
    id: int
    site_id: int
    zone_id: int
    slug: str
    agent_id: int | None
    x: int | None
    y: int | None


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


class DoorUpdate(_In):
    """Lockdown is not here: it has its own endpoints, which also command the agent."""

    name: Label | None = None
    agent_id: RowId | None = None
    anti_passback: bool | None = None


class DoorPublic(_Out):
    id: int
    site_id: int
    slug: str
    name: str
    agent_id: int | None
    anti_passback: bool
    locked_down: bool


class DoorsPublic(Page[DoorPublic]):
    pass


class UnlockRequest(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ms": 3000}]})

    ms: int = Field(default=5000, ge=1, le=600_000, description="How long to release the strike.")


class UnlockPublic(BaseModel):
    door_id: int
    ms: int
    audit_id: int
