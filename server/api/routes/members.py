"""Routes for members, their badges, plans and memberships."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status
from sqlalchemy.orm import Session

from ruche.server import registry
from ruche.server.api.deps import (
    AdminKey,
    BadgeInScope,
    ChangesDep,
    CurrentKey,
    MemberInScope,
    MembershipInScope,
    PagingDep,
    SessionDep,
    id_path,
    sites_of_key,
)
from ruche.server.api.policy import Scope, authorize, narrow
from ruche.server.api.schemas import (
    MAX_ID,
    BadgeCreate,
    BadgePublic,
    BadgesPublic,
    BadgeUpdate,
    MemberCreate,
    MemberPublic,
    MembershipCreate,
    MembershipPublic,
    MembershipsPublic,
    MembershipUpdate,
    MembersPublic,
    MemberUpdate,
    PlanCreate,
    PlanPublic,
    PlansPublic,
    PlanUpdate,
    patch,
)
from ruche.server.storage.models import MemberRow, PlanRow

router = APIRouter()
CREATED = status.HTTP_201_CREATED
NO_CONTENT = status.HTTP_204_NO_CONTENT


def _all_site_slugs(session: Session) -> list[str]:
    return [site.slug for site in registry.list_sites(session)]


# --- members -----------------------------------------------------------------------------


@router.get("/members", tags=["members"])
def list_members(
    *,
    _key: AdminKey,
    session: SessionDep,
    paging: PagingDep,
    active: bool | None = None,
) -> MembersPublic:
    return paging.page(MembersPublic, registry.list_members(session, active=active))


@router.post("/members", tags=["members"], status_code=CREATED)
def create_member(
    body: MemberCreate, _key: AdminKey, session: SessionDep, changes: ChangesDep
) -> MemberPublic:
    member = registry.create_member(session, name=body.name, email=body.email, active=body.active)
    changes.commit()
    return MemberPublic.model_validate(member)


@router.get("/members/{member_id}", tags=["members"])
def read_member(member: MemberInScope) -> MemberPublic:
    """A member's profile: an admin's to read, or the member's own."""
    return MemberPublic.model_validate(member)


@router.patch("/members/{member_id}", tags=["members"])
def update_member(
    _key: AdminKey,
    member: MemberInScope,
    body: MemberUpdate,
    session: SessionDep,
    changes: ChangesDep,
) -> MemberPublic:
    """Rename, change the email, or (de)activate a member: an inactive member opens nothing."""
    registry.update_member(session, member.id, **patch(body))
    if body.active is not None:
        changes.site_changed(*_all_site_slugs(session))
    changes.commit()
    return MemberPublic.model_validate(member)


@router.delete("/members/{member_id}", tags=["members"], status_code=NO_CONTENT)
def delete_member(
    _key: AdminKey, member: MemberInScope, session: SessionDep, changes: ChangesDep
) -> None:
    """Delete a member with no history (409 otherwise: deactivate them instead)."""
    registry.delete(session, MemberRow, member.id)
    changes.commit()


# --- badges ------------------------------------------------------------------------------


@router.get("/members/{member_id}/badges", tags=["badges"])
def list_badges(member: MemberInScope, session: SessionDep, paging: PagingDep) -> BadgesPublic:
    return paging.page(BadgesPublic, registry.list_badges(session, member_id=member.id))


@router.post("/members/{member_id}/badges", tags=["badges"], status_code=CREATED)
def enrol_badge(
    member_id: Annotated[int, id_path("A member id.")],
    body: BadgeCreate,
    key: CurrentKey,
    session: SessionDep,
    changes: ChangesDep,
) -> BadgePublic:
    """Enrol a card under a site's badge key: only its HMAC token is kept, never the UID.

    The card then opens every site sharing that key. For an admin, or the site's manager.
    """
    authorize(key, Scope.site(body.site_id))
    site_key = registry.site_key_of(session, body.site_id)
    badge = registry.enrol_badge(
        session, member_id, site_key, bytes.fromhex(body.uid), label=body.label
    )
    changes.site_changed(*(site.slug for site in sites_of_key(session, site_key.id)))
    changes.commit()
    return BadgePublic.model_validate(badge)


@router.get("/badges/{badge_id}", tags=["badges"])
def read_badge(badge: BadgeInScope) -> BadgePublic:
    return BadgePublic.model_validate(badge)


@router.patch("/badges/{badge_id}", tags=["badges"])
def update_badge(
    badge: BadgeInScope, body: BadgeUpdate, session: SessionDep, changes: ChangesDep
) -> BadgePublic:
    """Disable, re-activate or revoke a badge; revocation is final (409 after it)."""
    registry.set_badge_status(session, badge.id, body.status)
    changes.site_changed(*(site.slug for site in sites_of_key(session, badge.key_id)))
    changes.commit()
    return BadgePublic.model_validate(badge)


# --- plans -------------------------------------------------------------------------------


def _plan_public(plan: PlanRow) -> PlanPublic:
    return PlanPublic(
        id=plan.id,
        name=plan.name,
        site_ids=[site.id for site in plan.sites],
        schedule=plan.schedule,
        booking_only=plan.booking_only,
    )


@router.get("/plans", tags=["plans"])
def list_plans(_key: AdminKey, session: SessionDep, paging: PagingDep) -> PlansPublic:
    plans = registry.list_plans(session)
    return paging.page(PlansPublic, [_plan_public(plan) for plan in paging.cut(plans)])


@router.post("/plans", tags=["plans"], status_code=CREATED)
def create_plan(
    body: PlanCreate, _key: AdminKey, session: SessionDep, changes: ChangesDep
) -> PlanPublic:
    plan = registry.create_plan(
        session,
        name=body.name,
        site_ids=body.site_ids,
        schedule=body.schedule.model_dump(),
        booking_only=body.booking_only,
    )
    changes.site_changed(*(site.slug for site in plan.sites))
    changes.commit()
    return _plan_public(plan)


@router.get("/plans/{plan_id}", tags=["plans"])
def read_plan(
    plan_id: Annotated[int, id_path("A plan id.")], _key: AdminKey, session: SessionDep
) -> PlanPublic:
    return _plan_public(registry.get(session, PlanRow, plan_id))


@router.patch("/plans/{plan_id}", tags=["plans"])
def update_plan(
    plan_id: Annotated[int, id_path("A plan id.")],
    body: PlanUpdate,
    _key: AdminKey,
    session: SessionDep,
    changes: ChangesDep,
) -> PlanPublic:
    """Change a plan: the sites it gave before and those it gives now are told."""
    plan = registry.get(session, PlanRow, plan_id)
    before = [site.slug for site in plan.sites]
    registry.update_plan(session, plan_id, **patch(body))
    changes.site_changed(*before, *(site.slug for site in plan.sites))
    changes.commit()
    return _plan_public(plan)


@router.delete("/plans/{plan_id}", tags=["plans"], status_code=NO_CONTENT)
def delete_plan(
    plan_id: Annotated[int, id_path("A plan id.")],
    _key: AdminKey,
    session: SessionDep,
    changes: ChangesDep,
) -> None:
    """Delete a plan nobody is on (409 while memberships refer to it)."""
    plan = registry.get(session, PlanRow, plan_id)
    sites = [site.slug for site in plan.sites]
    registry.delete(session, PlanRow, plan_id)
    changes.site_changed(*sites)
    changes.commit()


# --- memberships -------------------------------------------------------------------------


def _plan_sites(session: Session, plan_id: int) -> list[str]:
    return [site.slug for site in registry.get(session, PlanRow, plan_id).sites]


@router.get("/memberships", tags=["plans"])
def list_memberships(
    key: CurrentKey,
    session: SessionDep,
    paging: PagingDep,
    member_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> MembershipsPublic:
    """Memberships: all for an admin, a member's own for a member key."""
    _, member_id = narrow(key, site_id=None, member_id=member_id, per_site=False)
    return paging.page(MembershipsPublic, registry.list_memberships(session, member_id=member_id))


@router.post("/memberships", tags=["plans"], status_code=CREATED)
def create_membership(
    body: MembershipCreate, _key: AdminKey, session: SessionDep, changes: ChangesDep
) -> MembershipPublic:
    """Put a member on a plan from `starts_at` until `ends_at` (exclusive; null: open-ended)."""
    membership = registry.create_membership(session, **body.model_dump())
    changes.site_changed(*_plan_sites(session, membership.plan_id))
    changes.commit()
    return MembershipPublic.model_validate(membership)


@router.get("/memberships/{membership_id}", tags=["plans"])
def read_membership(membership: MembershipInScope) -> MembershipPublic:
    return MembershipPublic.model_validate(membership)


@router.patch("/memberships/{membership_id}", tags=["plans"])
def end_membership(
    _key: AdminKey,
    membership: MembershipInScope,
    body: MembershipUpdate,
    session: SessionDep,
    changes: ChangesDep,
) -> MembershipPublic:
    """End a membership at `ends_at`."""
    registry.end_membership(session, membership.id, body.ends_at)
    changes.site_changed(*_plan_sites(session, membership.plan_id))
    changes.commit()
    return MembershipPublic.model_validate(membership)
