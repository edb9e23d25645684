"""API keys (the secret is shown once, at creation)."""

from __future__ import annotations

from datetime import datetime

from pydantic import (
    ConfigDict,
    Field,
)

from ruche.server.api.schemas.base import Label, Page, RowId, _In, _Out
from ruche.server.storage.enums import Role


class ApiKeyCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "front desk", "role": "manager", "site_id": 1}]},
    )

    name: Label = ""
    role: Role
    site_id: RowId | None = Field(default=None, description="Required for a manager key only.")
    member_id: RowId | None = Field(default=None, description="Required for a member key only.")


class ApiKeyPublic(_Out):
    id: int
    name: str
    prefix: str
    role: Role
    site_id: int | None
    member_id: int | None
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyPublic):
    secret: str = Field(description="Shown this once: only its hash is kept.")


class ApiKeysPublic(Page[ApiKeyPublic]):
    pass
