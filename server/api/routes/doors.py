"""Routes for doors: the registry's doors, remote unlock, and lockdown of a door or a site.

Unlock and lockdown write an audit row in the same transaction as their change, and
their command reaches the agent only after that commit (`Changes`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from fastapi import APIRouter, status
from sqlalchemy.orm import Session

from ruche.broker import Lockdown, Unlock
from ruche.server import registry
from ruche.server.access import audit
from ruche.server.access.audit import AuditEntry
from ruche.server.api.deps import (
    Changes,
    ChangesDep,
    CurrentKey,
    DoorInScope,
    ManagedSite,
    PagingDep,
    SessionDep,
)
from ruche.server.api.policy import Principal
from ruche.server.api.schemas import (
    DoorCreate,
    DoorPublic,
    DoorsPublic,
    DoorUpdate,
    LockdownPublic,
    UnlockPublic,
    UnlockRequest,
    patch,
)
from ruche.server.errors import Conflict
from ruche.server.storage.enums import AuditKind, AuditSource
from ruche.server.storage.models import AgentRow, DoorRow, SiteRow

router = APIRouter(tags=["doors"])


@router.get("/sites/{site_id}/doors")
def list_doors(site: ManagedSite, session: SessionDep, paging: PagingDep) -> DoorsPublic:
    return paging.page(DoorsPublic, registry.list_doors(session, site_id=site.id))


@router.post("/sites/{site_id}/doors", status_code=status.HTTP_201_CREATED)
def create_door(
    site: ManagedSite, body: DoorCreate, session: SessionDep, changes: ChangesDep
) -> DoorPublic:
    door = registry.create_door(session, site_id=site.id, slug=body.slug, name=body.name,
                                agent_id=body.agent_id, anti_passback=body.anti_passback,
                                wiring=body.wiring)  # fmt: skip
    changes.site_changed(site.slug)
    changes.commit()
    return DoorPublic.model_validate(door)


@router.get("/doors/{door_id}")
def read_door(door: DoorInScope) -> DoorPublic:
    return DoorPublic.model_validate(door)


@router.patch("/doors/{door_id}")
def update_door(
    door: DoorInScope, body: DoorUpdate, session: SessionDep, changes: ChangesDep
) -> DoorPublic:
    """Rename, re-assign to an agent (null: none), set anti-passback, or (re)wire it (its
    agent takes the change from its config within seconds); lockdown has its own."""
    fields = patch(body, frozenset({"agent_id", "wiring"}))
    if "wiring" in fields:
        fields["wiring"] = body.wiring
    registry.update_door(session, door.id, **fields)
    changes.site_changed(registry.get(session, SiteRow, door.site_id).slug)
    changes.commit()
    return DoorPublic.model_validate(door)


@router.delete("/doors/{door_id}", status_code=status.HTTP_204_NO_CONTENT)
def delete_door(door: DoorInScope, session: SessionDep, changes: ChangesDep) -> None:
    site = registry.get(session, SiteRow, door.site_id)
    registry.delete(session, DoorRow, door.id)
    changes.site_changed(site.slug)
    changes.commit()


@router.post("/doors/{door_id}/unlock", status_code=status.HTTP_202_ACCEPTED)
def unlock_door(
    door: DoorInScope,
    body: UnlockRequest,
    key: CurrentKey,
    session: SessionDep,
    changes: ChangesDep,
) -> UnlockPublic:
    """Release the door's strike for `ms`: audited, then sent to the door's agent."""
    if door.agent_id is None:
        raise Conflict(f"door {door.slug!r} has no agent to drive it: assign one first")
    if door.locked_down:
        raise Conflict(f"door {door.slug!r} is locked down: lift the lockdown first")
    site = registry.get(session, SiteRow, door.site_id)
    agent = registry.get(session, AgentRow, door.agent_id)
    now = datetime.now(UTC)
    row = audit.append(
        session,
        AuditEntry(
            kind=AuditKind.REMOTE_UNLOCK,
            source=AuditSource.API,
            site=site.slug,
            agent=agent.slug,
            door=door.slug,
            reason="remote_unlock",
            actor=key.actor,
            decided_at=now,
            received_at=now,
        ),
    )
    changes.send(site.slug, agent.slug, Unlock(door=door.slug, ms=body.ms))
    changes.commit()
    return UnlockPublic(door_id=door.id, ms=body.ms, audit_id=row.id)


def _lockdown(
    session: Session,
    changes: Changes,
    key: Principal,
    site: SiteRow,
    doors: Sequence[DoorRow],
    *,
    door: DoorRow | None,
    active: bool,
) -> LockdownPublic:
    """Audit and command a lockdown already set on `doors`, then commit.

    One door: its agent gets `Lockdown(door=...)`. A whole site: each agent that drives
    any of its doors gets `Lockdown(door=None)`, i.e. all its doors.
    """
    agent_ids = sorted({d.agent_id for d in doors if d.agent_id is not None})
    agents = [registry.get(session, AgentRow, agent_id) for agent_id in agent_ids]
    now = datetime.now(UTC)
    row = audit.append(
        session,
        AuditEntry(
            kind=AuditKind.LOCKDOWN,
            source=AuditSource.API,
            site=site.slug,
            agent=agents[0].slug if door is not None and agents else None,
            door=None if door is None else door.slug,
            reason="lockdown" if active else "lockdown_lifted",
            actor=key.actor,
            decided_at=now,
            received_at=now,
        ),
    )
    for agent in agents:
        command = Lockdown(door=None if door is None else door.slug, active=active)
        changes.send(site.slug, agent.slug, command)
    changes.site_changed(site.slug)
    changes.commit()
    return LockdownPublic(
        site_id=site.id, locked_down=active, door_ids=[d.id for d in doors], audit_id=row.id
    )


def _door_lockdown(
    door: DoorRow, key: Principal, session: Session, changes: Changes, *, active: bool
) -> LockdownPublic:
    site = registry.get(session, SiteRow, door.site_id)
    registry.update_door(session, door.id, locked_down=active)
    return _lockdown(session, changes, key, site, [door], door=door, active=active)


def _site_lockdown(
    site: SiteRow, key: Principal, session: Session, changes: Changes, *, active: bool
) -> LockdownPublic:
    doors = registry.set_site_lockdown(session, site.id, locked_down=active)
    return _lockdown(session, changes, key, site, doors, door=None, active=active)


@router.post("/doors/{door_id}/lockdown")
def lock_down_door(
    door: DoorInScope, key: CurrentKey, session: SessionDep, changes: ChangesDep
) -> LockdownPublic:
    """Lock the door down: no badge opens it until the lockdown is lifted."""
    return _door_lockdown(door, key, session, changes, active=True)


@router.delete("/doors/{door_id}/lockdown")
def lift_door_lockdown(
    door: DoorInScope, key: CurrentKey, session: SessionDep, changes: ChangesDep
) -> LockdownPublic:
    return _door_lockdown(door, key, session, changes, active=False)


@router.post("/sites/{site_id}/lockdown")
def lock_down_site(
    site: ManagedSite, key: CurrentKey, session: SessionDep, changes: ChangesDep
) -> LockdownPublic:
    """Lock down every door of the site."""
    return _site_lockdown(site, key, session, changes, active=True)


@router.delete("/sites/{site_id}/lockdown")
def lift_site_lockdown(
    site: ManagedSite, key: CurrentKey, session: SessionDep, changes: ChangesDep
) -> LockdownPublic:
    """Lift the lockdown of every door of the site."""
    return _site_lockdown(site, key, session, changes, active=False)
