"""Routes for sites and their floor: holidays, zones, desks and agents."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from ruche.server import registry
from ruche.server.api.deps import (
    AdminKey,
    AgentInScope,
    ChangesDep,
    CurrentKey,
    DeskInScope,
    DirectorySite,
    ManagedSite,
    PagingDep,
    SessionDep,
    ZoneInScope,
)
from ruche.server.api.policy import Scope, permits
from ruche.server.api.schemas import (
    MAX_ID,
    AgentCreate,
    AgentPublic,
    AgentsPublic,
    BookingLimitPublic,
    BookingLimitSet,
    BookingLimitsPublic,
    DeskCreate,
    DeskPublic,
    DesksPublic,
    DeskUpdate,
    HolidayCreate,
    HolidayPublic,
    HolidaysPublic,
    SiteCreate,
    SitePublic,
    SitesPublic,
    SiteUpdate,
    ZoneCreate,
    ZonePublic,
    ZonesPublic,
    ZoneUpdate,
    patch,
)
from ruche.server.errors import Invalid
from ruche.server.storage.models import AgentRow, DeskRow, SiteRow, ZoneRow

router = APIRouter()
CREATED = status.HTTP_201_CREATED
NO_CONTENT = status.HTTP_204_NO_CONTENT


# --- sites -------------------------------------------------------------------------------


@router.get("/sites", tags=["sites"])
def list_sites(key: CurrentKey, session: SessionDep, paging: PagingDep) -> SitesPublic:
    """The sites this key may read: all for an admin or member, its own for a manager."""
    sites = [
        site
        for site in registry.list_sites(session)
        if permits(key, Scope(sites=frozenset({site.id}), members_read=True))
    ]
    return paging.page(SitesPublic, sites)


@router.post("/sites", tags=["sites"], status_code=CREATED)
def create_site(
    body: SiteCreate, _key: AdminKey, session: SessionDep, changes: ChangesDep
) -> SitePublic:
    """A new site, with a badge key of its own or shared with `share_key_with`."""
    key_id = None
    if body.share_key_with is not None:
        key_id = registry.get(session, SiteRow, body.share_key_with).key_id
    site = registry.create_site(
        session,
        slug=body.slug,
        name=body.name,
        timezone=body.timezone,
        no_show_minutes=body.no_show_minutes,
        key_id=key_id,
        opening_hours=None if body.opening_hours is None else body.opening_hours.model_dump(),
    )
    changes.commit()
    return SitePublic.model_validate(site)


@router.get("/sites/{site_id}", tags=["sites"])
def read_site(site: DirectorySite) -> SitePublic:
    return SitePublic.model_validate(site)


@router.patch("/sites/{site_id}", tags=["sites"])
def update_site(
    site: ManagedSite, body: SiteUpdate, session: SessionDep, changes: ChangesDep
) -> SitePublic:
    """Rename a site, or change its timezone, no-show minutes or opening hours."""
    registry.update_site(session, site.id, **patch(body))
    changes.site_changed(site.slug)
    changes.commit()
    return SitePublic.model_validate(site)


@router.delete("/sites/{site_id}", tags=["sites"], status_code=NO_CONTENT)
def delete_site(
    _key: AdminKey, site: ManagedSite, session: SessionDep, changes: ChangesDep
) -> None:
    """Delete an empty site (409 while zones, doors, agents or bookings refer to it)."""
    registry.delete(session, SiteRow, site.id)
    changes.commit()


# --- holidays ----------------------------------------------------------------------------


@router.get("/sites/{site_id}/holidays", tags=["sites"])
def list_holidays(site: DirectorySite, session: SessionDep, paging: PagingDep) -> HolidaysPublic:
    holidays = registry.list_holidays(session, site.id)
    return paging.page(HolidaysPublic, holidays)


@router.post("/sites/{site_id}/holidays", tags=["sites"], status_code=CREATED)
def add_holiday(
    site: ManagedSite, body: HolidayCreate, session: SessionDep, changes: ChangesDep
) -> HolidayPublic:
    """Close the site's business-hours schedules on a local date."""
    holiday = registry.add_holiday(session, site.id, body.day, body.name)
    changes.site_changed(site.slug)
    changes.commit()
    return HolidayPublic.model_validate(holiday)


@router.delete("/sites/{site_id}/holidays/{day}", tags=["sites"], status_code=NO_CONTENT)
def remove_holiday(
    site: ManagedSite,
    day: Annotated[date, Path(description="The local date, YYYY-MM-DD.", examples=["2030-03-11"])],
    session: SessionDep,
    changes: ChangesDep,
) -> None:
    registry.remove_holiday(session, site.id, day)
    changes.site_changed(site.slug)
    changes.commit()


# --- booking limits ----------------------------------------------------------------------


@router.get("/sites/{site_id}/booking-limits", tags=["sites"])
def list_booking_limits(
    site: DirectorySite, session: SessionDep, paging: PagingDep
) -> BookingLimitsPublic:
    """How members may book here: the site's rule, then each plan's that overrides it."""
    return paging.page(BookingLimitsPublic, registry.list_limits(session, site.id))


@router.put("/sites/{site_id}/booking-limits", tags=["sites"])
def set_booking_limits(
    site: ManagedSite, body: BookingLimitSet, session: SessionDep, changes: ChangesDep
) -> BookingLimitPublic | None:
    """Set the site's rule (no `plan_id`) or a plan's; every limit null removes the rule
    (the answer is then null). Existing bookings stay; new ones are checked."""
    row = registry.set_limits(session, site.id, plan_id=body.plan_id,
                              days_ahead=body.days_ahead, max_minutes=body.max_minutes,
                              at_once=body.at_once)  # fmt: skip
    changes.commit()
    return None if row is None else BookingLimitPublic.model_validate(row)


# --- zones -------------------------------------------------------------------------------


@router.get("/sites/{site_id}/zones", tags=["floor"])
def list_zones(site: DirectorySite, session: SessionDep, paging: PagingDep) -> ZonesPublic:
    zones = registry.list_zones(session, site.id)
    return paging.page(ZonesPublic, zones)


@router.post("/sites/{site_id}/zones", tags=["floor"], status_code=CREATED)
def create_zone(
    site: ManagedSite, body: ZoneCreate, session: SessionDep, changes: ChangesDep
) -> ZonePublic:
    zone = registry.create_zone(session, site_id=site.id, name=body.name)
    changes.commit()
    return ZonePublic.model_validate(zone)


@router.get("/zones/{zone_id}", tags=["floor"])
def read_zone(zone: ZoneInScope) -> ZonePublic:
    return ZonePublic.model_validate(zone)


@router.patch("/zones/{zone_id}", tags=["floor"])
def update_zone(
    zone: ZoneInScope, body: ZoneUpdate, session: SessionDep, changes: ChangesDep
) -> ZonePublic:
    registry.update_zone(session, zone.id, name=body.name)
    changes.commit()
    return ZonePublic.model_validate(zone)


@router.delete("/zones/{zone_id}", tags=["floor"], status_code=NO_CONTENT)
def delete_zone(zone: ZoneInScope, session: SessionDep, changes: ChangesDep) -> None:
    """Delete a zone (409 while desks or bookings refer to it)."""
    registry.delete(session, ZoneRow, zone.id)
    changes.commit()


# --- desks -------------------------------------------------------------------------------


@router.get("/sites/{site_id}/desks", tags=["floor"])
def list_desks(
    site: DirectorySite,
    session: SessionDep,
    paging: PagingDep,
    zone_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
) -> DesksPublic:
    desks = registry.list_desks(session, site_id=site.id, zone_id=zone_id)
    return paging.page(DesksPublic, desks)


@router.post("/sites/{site_id}/desks", tags=["floor"], status_code=CREATED)
def create_desk(
    site: ManagedSite, body: DeskCreate, session: SessionDep, changes: ChangesDep
) -> DeskPublic:
    """A desk in one of the site's zones, optionally read by one of its agents."""
    if registry.get(session, ZoneRow, body.zone_id).site_id != site.id:
        raise Invalid(f"zone {body.zone_id} is not at site {site.id}: pick one of its zones")
    desk = registry.create_desk(
        session, zone_id=body.zone_id, slug=body.slug, agent_id=body.agent_id, x=body.x, y=body.y,
        wiring=body.wiring,
    )  # fmt: skip
    changes.site_changed(site.slug)
    changes.commit()
    return DeskPublic.model_validate(desk)


@router.get("/desks/{desk_id}", tags=["floor"])
def read_desk(desk: DeskInScope) -> DeskPublic:
    return DeskPublic.model_validate(desk)


@router.patch("/desks/{desk_id}", tags=["floor"])
def update_desk(
    desk: DeskInScope, body: DeskUpdate, session: SessionDep, changes: ChangesDep
) -> DeskPublic:
    """Rename, move within the site, re-assign to an agent (null: none), place a desk, or
    (re)wire it: its agent takes the change from its config within seconds."""
    fields = patch(body, frozenset({"agent_id", "x", "y", "wiring"}))
    if "wiring" in fields:
        fields["wiring"] = body.wiring
    registry.update_desk(session, desk.id, **fields)
    changes.site_changed(registry.get(session, SiteRow, desk.site_id).slug)
    changes.commit()
    return DeskPublic.model_validate(desk)


@router.delete("/desks/{desk_id}", tags=["floor"], status_code=NO_CONTENT)
def delete_desk(desk: DeskInScope, session: SessionDep, changes: ChangesDep) -> None:
    """Delete a desk (409 while bookings refer to it)."""
    site = registry.get(session, SiteRow, desk.site_id)
    registry.delete(session, DeskRow, desk.id)
    changes.site_changed(site.slug)
    changes.commit()


# --- agents ------------------------------------------------------------------------------


@router.get("/sites/{site_id}/agents", tags=["floor"])
def list_agents(site: ManagedSite, session: SessionDep, paging: PagingDep) -> AgentsPublic:
    agents = registry.list_agents(session, site.id)
    return paging.page(AgentsPublic, agents)


@router.post("/sites/{site_id}/agents", tags=["floor"], status_code=CREATED)
def create_agent(
    site: ManagedSite, body: AgentCreate, session: SessionDep, changes: ChangesDep
) -> AgentPublic:
    """Register an edge agent; its broker account is `{site slug}/{agent slug}`."""
    agent = registry.create_agent(session, site_id=site.id, slug=body.slug)
    changes.commit()
    return AgentPublic.model_validate(agent)


@router.get("/agents/{agent_id}", tags=["floor"])
def read_agent(agent: AgentInScope) -> AgentPublic:
    return AgentPublic.model_validate(agent)


@router.delete("/agents/{agent_id}", tags=["floor"], status_code=NO_CONTENT)
def delete_agent(agent: AgentInScope, session: SessionDep, changes: ChangesDep) -> None:
    """Unplug an agent: its doors and desks are left unassigned."""
    site = registry.get(session, SiteRow, agent.site_id)
    registry.delete(session, AgentRow, agent.id)
    changes.site_changed(site.slug)
    changes.commit()
