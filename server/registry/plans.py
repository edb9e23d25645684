"""Plans (an access schedule, or booking only, at some sites) and members' memberships of them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server.errors import Invalid
from ruche.server.registry.base import UNSET, _aware, _savepoint, _Unset, _update, get
from ruche.server.registry.schedule_spec import parse_schedule, schedule_json
from ruche.server.storage.models import (
    MemberRow,
    MembershipRow,
    PlanRow,
    SiteRow,
)


def _minutes(hours: str, minutes: str, text: str) -> int:
    h, m = int(hours), int(minutes)
    if m > 59 or h > 24 or (h == 24 and m != 0):
        raise Invalid(f"{text!r}: not a time of day")
    return h * 60 + m


def check_schedule(value: Mapping[str, Any]) -> dict[str, Any]:
    """A schedule checked and normalised, as its JSON column holds it (`schedule_spec`)."""
    return schedule_json(parse_schedule(value))


def _sites(session: Session, site_ids: Iterable[int]) -> list[SiteRow]:
    return [get(session, SiteRow, site_id) for site_id in dict.fromkeys(site_ids)]


def create_plan(
    session: Session,
    *,
    name: str,
    site_ids: Sequence[int],
    schedule: Mapping[str, Any],
    booking_only: bool = False,
) -> PlanRow:
    if not name.strip():
        raise Invalid("a plan needs a name")
    plan = PlanRow(name=name, schedule=check_schedule(schedule), booking_only=booking_only)
    plan.sites = _sites(session, site_ids)
    with _savepoint(session, f"plan {name!r} already exists"):
        session.add(plan)
    return plan


def list_plans(session: Session) -> list[PlanRow]:
    return list(session.scalars(select(PlanRow).order_by(PlanRow.id)))


def update_plan(
    session: Session,
    plan_id: int,
    *,
    name: str | _Unset = UNSET,
    site_ids: Sequence[int] | _Unset = UNSET,
    schedule: Mapping[str, Any] | _Unset = UNSET,
    booking_only: bool | _Unset = UNSET,
) -> PlanRow:
    plan = get(session, PlanRow, plan_id)
    changes: dict[str, object] = {"name": name, "booking_only": booking_only}
    if not isinstance(schedule, _Unset):
        changes["schedule"] = check_schedule(schedule)
    if not isinstance(site_ids, _Unset):
        changes["sites"] = _sites(session, site_ids)
    _update(session, plan, f"plan {name!r} already exists", changes)
    return plan


def create_membership(
    session: Session,
    *,
    member_id: int,
    plan_id: int,
    starts_at: datetime,
    ends_at: datetime | None = None,
) -> MembershipRow:
    """Put a member on a plan over [starts_at, ends_at); `ends_at` None is open-ended."""
    get(session, MemberRow, member_id)
    get(session, PlanRow, plan_id)
    starts_at = _aware(starts_at, "start")
    if ends_at is not None and _aware(ends_at, "end") <= starts_at:
        raise Invalid("a membership must end after it starts")
    membership = MembershipRow(
        member_id=member_id, plan_id=plan_id, starts_at=starts_at, ends_at=ends_at
    )
    session.add(membership)
    session.flush()
    return membership


def end_membership(session: Session, membership_id: int, ends_at: datetime) -> MembershipRow:
    membership = get(session, MembershipRow, membership_id)
    if _aware(ends_at, "end") <= membership.starts_at:
        raise Invalid("a membership must end after it starts")
    membership.ends_at = ends_at
    session.flush()
    return membership


def list_memberships(session: Session, *, member_id: int | None = None) -> list[MembershipRow]:
    query = select(MembershipRow).order_by(MembershipRow.id)
    if member_id is not None:
        query = query.where(MembershipRow.member_id == member_id)
    return list(session.scalars(query))
