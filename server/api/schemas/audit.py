"""The audit log and its verification."""

from __future__ import annotations

from datetime import datetime

from pydantic import (
    BaseModel,
    Field,
)

from ruche.server.api.schemas.base import _Out
from ruche.server.storage.enums import AuditKind, AuditSource


class AuditEntryPublic(_Out):
    id: int
    kind: AuditKind
    source: AuditSource
    site: str
    agent: str | None
    door: str | None
    member_id: int | None
    allowed: bool | None
    reason: str | None
    actor: str | None
    decided_at: datetime
    received_at: datetime


class AuditPagePublic(BaseModel):
    data: list[AuditEntryPublic]
    next_cursor: int | None = Field(description="Pass as `cursor` for the next, older page.")


class AuditVerifyPublic(BaseModel):
    ok: bool
    checked: int
    bad_id: int | None = None
    problem: str | None = None
