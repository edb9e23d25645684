"""API keys: stored hashed, shown once, scoped by role to everything, a site, or a member."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server.errors import Invalid
from ruche.server.registry.base import API_KEY_PREFIX, _now, _savepoint, get
from ruche.server.storage.enums import Role
from ruche.server.storage.models import (
    ApiKeyRow,
    MemberRow,
    SiteRow,
)


def _hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_api_key(
    session: Session,
    *,
    role: Role,
    name: str = "",
    site_id: int | None = None,
    member_id: int | None = None,
) -> tuple[ApiKeyRow, str]:
    """A new API key and its secret, shown this once: only a prefix and a hash are kept."""
    if (role is Role.MANAGER) != (site_id is not None):
        raise Invalid("a manager key needs a site, and only a manager key takes one")
    if (role is Role.MEMBER) != (member_id is not None):
        raise Invalid("a member key needs a member, and only a member key takes one")
    if site_id is not None:
        get(session, SiteRow, site_id)
    if member_id is not None:
        get(session, MemberRow, member_id)
    prefix = secrets.token_hex(6)
    secret = f"{API_KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    key = ApiKeyRow(
        name=name,
        prefix=prefix,
        hash=_hash_key(secret),
        role=role,
        site_id=site_id,
        member_id=member_id,
        created_at=_now(),
    )
    with _savepoint(session, "API key prefix clash: try again"):
        session.add(key)
    return key, secret


def authenticate_api_key(session: Session, secret: str) -> ApiKeyRow | None:
    """The live key `secret` belongs to, or None (unknown, malformed or revoked)."""
    parts = secret.split("_", 2)
    if len(parts) != 3 or parts[0] != API_KEY_PREFIX:
        return None
    key = session.scalars(select(ApiKeyRow).where(ApiKeyRow.prefix == parts[1])).one_or_none()
    if key is None or key.revoked_at is not None:
        return None
    return key if hmac.compare_digest(key.hash, _hash_key(secret)) else None


def revoke_api_key(session: Session, key_id: int) -> ApiKeyRow:
    key = get(session, ApiKeyRow, key_id)
    if key.revoked_at is None:
        key.revoked_at = _now()
        session.flush()
    return key
