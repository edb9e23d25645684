"""Routes for the audit log: queries scoped to the key, and the chain's verification."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from ruche.server import registry
from ruche.server.access import audit
from ruche.server.api.deps import AdminKey, CurrentKey, SessionDep
from ruche.server.api.policy import narrow
from ruche.server.api.schemas import (
    MAX_ID,
    MAX_PAGE,
    AuditEntryPublic,
    AuditPagePublic,
    AuditVerifyPublic,
    Instant,
)
from ruche.server.errors import Invalid
from ruche.server.storage.models import DoorRow, SiteRow

router = APIRouter(tags=["audit"])
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]


@router.get("/audit")
def query_audit(
    *,
    key: CurrentKey,
    session: SessionDep,
    member: Annotated[int | None, Query(ge=1, le=MAX_ID, description="A member id.")] = None,
    site: Annotated[int | None, Query(ge=1, le=MAX_ID, description="A site id.")] = None,
    door: Annotated[int | None, Query(ge=1, le=MAX_ID, description="A door id.")] = None,
    since: Annotated[Instant | None, Query(description="Kept: decided at or after.")] = None,
    until: Annotated[Instant | None, Query(description="Kept: decided before.")] = None,
    cursor: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="`next_cursor` of the page before.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> AuditPagePublic:
    """Audit rows, newest first: a manager's site's, a member's own, or any for an admin."""
    door_row = None if door is None else registry.get(session, DoorRow, door)
    if door_row is not None:
        if site is not None and site != door_row.site_id:
            raise Invalid(f"door {door} is not at site {site}")
        site = door_row.site_id
    site_id, member_id = narrow(key, site_id=site, member_id=member)
    page = audit.query(
        session,
        member_id=member_id,
        site=None if site_id is None else registry.get(session, SiteRow, site_id).slug,
        door=None if door_row is None else door_row.slug,
        since=since,
        until=until,
        limit=limit,
        cursor=cursor,
    )
    return AuditPagePublic(
        data=[AuditEntryPublic.model_validate(row) for row in page.rows],
        next_cursor=page.next_cursor,
    )


@router.get("/audit/verify")
def verify_audit(_key: AdminKey, session: SessionDep) -> AuditVerifyPublic:
    """Walk the hash chain: `ok`, or the first row that was altered or deleted, and how."""
    result = audit.verify(session)
    return AuditVerifyPublic(
        ok=result.ok, checked=result.checked, bad_id=result.bad_id, problem=result.problem
    )
