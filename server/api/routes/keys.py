"""Routes for API keys: admins make and revoke them; every key may ask who it is."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select

from ruche.server import registry
from ruche.server.api.deps import AdminKey, ChangesDep, CurrentKey, PagingDep, SessionDep, id_path
from ruche.server.api.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic, ApiKeysPublic
from ruche.server.storage.models import ApiKeyRow

router = APIRouter(tags=["api keys"])
KeyId = Annotated[int, id_path("An API key id.")]


@router.get("/me")
def read_own_key(key: CurrentKey, session: SessionDep) -> ApiKeyPublic:
    """The key this request came with: its role and, for a manager or member, its scope."""
    if key.key_id is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "signed in as a person, not with a key")
    return ApiKeyPublic.model_validate(registry.get(session, ApiKeyRow, key.key_id))


@router.get("/api-keys")
def list_api_keys(_key: AdminKey, session: SessionDep, paging: PagingDep) -> ApiKeysPublic:
    return paging.page(
        ApiKeysPublic, list(session.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id)))
    )


@router.post("/api-keys", status_code=status.HTTP_201_CREATED)
def create_api_key(
    body: ApiKeyCreate, _key: AdminKey, session: SessionDep, changes: ChangesDep
) -> ApiKeyCreated:
    """A new key; its `secret` is in this answer only (only a hash of it is kept).

    A manager key needs `site_id`, a member key `member_id`, an admin key neither.
    """
    key, secret = registry.create_api_key(session, **body.model_dump())
    changes.commit()
    return ApiKeyCreated.model_validate(
        {**ApiKeyPublic.model_validate(key).model_dump(), "secret": secret}
    )


@router.get("/api-keys/{key_id}")
def read_api_key(key_id: KeyId, _key: AdminKey, session: SessionDep) -> ApiKeyPublic:
    return ApiKeyPublic.model_validate(registry.get(session, ApiKeyRow, key_id))


@router.delete("/api-keys/{key_id}")
def revoke_api_key(
    key_id: KeyId, _key: AdminKey, session: SessionDep, changes: ChangesDep
) -> ApiKeyPublic:
    """Revoke a key for good: it authenticates nothing from now on."""
    key = registry.revoke_api_key(session, key_id)
    changes.commit()
    return ApiKeyPublic.model_validate(key)
