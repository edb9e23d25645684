"""Members and badges (a badge's UID goes in, only its token comes back)."""

from __future__ import annotations

from datetime import datetime

from pydantic import (
    ConfigDict,
    Field,
)

from ruche.server.api.schemas.base import Email, Label, LongName, Page, RowId, UidHex, _In, _Out
from ruche.server.storage.enums import BadgeStatus


class MemberCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "Grace", "email": "grace@example.org"}]},
    )

    name: LongName
    email: Email
    active: bool = True


class MemberUpdate(_In):
    name: LongName | None = None
    email: Email | None = None
    active: bool | None = None


class MemberPublic(_Out):
    id: int
    name: str
    email: str
    active: bool


class MembersPublic(Page[MemberPublic]):
    pass


class BadgeCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"site_id": 1, "uid": "04a224b2c35e80", "label": "blue card"}]
        },
    )

    site_id: RowId = Field(description="The site whose badge key the card is enrolled under.")
    uid: UidHex
    label: Label = ""


class BadgeUpdate(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"status": "disabled"}]}
    )

    status: BadgeStatus = Field(description="Revocation is final: a revoked badge stays revoked.")


class BadgePublic(_Out):
    """A badge as the API shows it: neither the UID nor its token."""

    id: int
    member_id: int
    key_id: int
    status: BadgeStatus
    label: str
    created_at: datetime


class BadgesPublic(Page[BadgePublic]):
    pass
