"""Registry operations over a Session: sites, zones, agents, desks, doors, members, badges,
plans, memberships, bookings, day passes and API keys.

```python
with transaction(sessions) as session:
    site = create_site(session, slug="lyon", name="Lyon", timezone="Europe/Paris")
    member = create_member(session, name="Ada", email="ada@example.org")
    badge = enrol_badge(session, member.id, site_key_of(session, site.id), uid=b"\x04\xa2...")
```

Every function works inside the caller's transaction and never commits. What it refuses
it says with `NotFound`, `Conflict` or `Invalid` (`ruche.server.errors`); the database's
own integrity errors are caught in a savepoint and translated, so the caller's transaction
stays usable.

Bookings. A desk, or a whole zone (a room), is booked over the half-open interval
[starts_at, ends_at). Two active (`booked`) bookings of one resource may not intersect;
touching ones (10:00-11:00 then 11:00-12:00) may. Grace minutes are not part of the rule:
they widen when the booking opens the doors, and letting someone in ten minutes early must
not forbid the booking before theirs. The check and the insert are made atomic by locking
the booked resource: `SELECT ... FOR UPDATE` on its desk or zone row on PostgreSQL (the
second of two concurrent bookers waits, then sees the first one's row: READ COMMITTED
takes a fresh snapshot per statement), and SQLite's single write lock, which `db.py`
takes at `BEGIN IMMEDIATE`. An exclusion constraint would need the btree_gist extension
and does not exist on SQLite; the lock keeps one rule, in Python, for both databases.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, date, datetime
from enum import Enum
from typing import Any, Final, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ruche.broker.passwords import generate_password, hash_password
from ruche.broker.tokens import MIN_SITE_KEY_BYTES, badge_token
from ruche.broker.topics import ID_PATTERN
from ruche.server.errors import Conflict, Invalid, NotFound
from ruche.server.registry.schedule_spec import parse_schedule, schedule_json
from ruche.server.storage.enums import BadgeStatus, BookingStatus, Role
from ruche.server.storage.models import (
    AgentRow,
    ApiKeyRow,
    BadgeRow,
    Base,
    BookingRow,
    DayPassRow,
    DeskRow,
    DoorRow,
    HolidayRow,
    MemberRow,
    MembershipRow,
    PlanRow,
    SiteKeyRow,
    SiteRow,
    ZoneRow,
    check_timezone,
)

M = TypeVar("M", bound=Base)
V = TypeVar("V")


class _Unset(Enum):
    UNSET = "unset"


UNSET: Final = _Unset.UNSET
"""The default of `update_*` arguments: leave this field as it is (None may be a value)."""

SITE_KEY_BYTES = 32
MAX_GRACE_MINUTES = 24 * 60
_SLUG = re.compile(f"^{ID_PATTERN}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
API_KEY_PREFIX = "ruche"


def _now() -> datetime:
    return datetime.now(UTC)


# --- generic -----------------------------------------------------------------------------


def get(session: Session, model: type[M], key: int) -> M:
    """The `model` row with primary key `key`, or NotFound."""
    found = session.get(model, key)
    if found is None:
        raise NotFound(model.__name__, key)
    return found


def delete(session: Session, model: type[M], key: int) -> None:
    """Delete a row; Conflict when other rows still refer to it (deactivate it instead)."""
    row = get(session, model, key)
    with _savepoint(
        session, f"{model.__name__} {key} is still in use: remove what refers to it first"
    ):
        session.delete(row)


@contextmanager
def _savepoint(session: Session, conflict: str) -> Iterator[None]:
    """Run the block in a savepoint and flush it; an integrity error becomes Conflict.

    The savepoint keeps the caller's transaction usable after the error (PostgreSQL would
    otherwise refuse every later statement in it).
    """
    try:
        with session.begin_nested():
            yield
    except IntegrityError as exc:
        raise Conflict(conflict) from exc


def _update(session: Session, row: Base, conflict: str, changes: Mapping[str, object]) -> None:
    with _savepoint(session, conflict):
        for name, value in changes.items():
            if value is not UNSET:
                setattr(row, name, value)


def check_slug(value: str, what: str) -> str:
    """`value` if it can be a site, agent, desk or door id on the wire, else Invalid."""
    if not _SLUG.match(value):
        raise Invalid(
            f"{what} {value!r} is not a valid id: 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    return value


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(f"{what} {value.isoformat()} has no timezone: give an aware datetime")
    return value.astimezone(UTC)


# --- site keys and sites -----------------------------------------------------------------


def create_site_key(session: Session, key: bytes | None = None) -> SiteKeyRow:
    """A new badge key: `key` if given (at least 16 bytes), else 32 random bytes."""
    if key is None:
        key = secrets.token_bytes(SITE_KEY_BYTES)
    if len(key) < MIN_SITE_KEY_BYTES:
        raise Invalid(f"a site key needs at least {MIN_SITE_KEY_BYTES} bytes")
    row = SiteKeyRow(key=key, created_at=_now())
    session.add(row)
    session.flush()
    return row


def site_key_of(session: Session, site_id: int) -> SiteKeyRow:
    """The key badge UIDs are HMAC'd under at this site."""
    return get(session, SiteKeyRow, get(session, SiteRow, site_id).key_id)


def create_site(
    session: Session,
    *,
    slug: str,
    name: str,
    timezone: str,
    no_show_minutes: int = 15,
    key_id: int | None = None,
    opening_hours: Mapping[str, Any] | None = None,
) -> SiteRow:
    """A site; it shares badge key `key_id` with other sites, or gets a new key of its own.

    `opening_hours` is a schedule (`check_schedule`); None means business hours.
    """
    check_slug(slug, "site id")
    check_timezone(timezone)
    _check_minutes(no_show_minutes, "no-show minutes")
    hours = None if opening_hours is None else check_schedule(opening_hours)
    key = create_site_key(session) if key_id is None else get(session, SiteKeyRow, key_id)
    site = SiteRow(
        slug=slug,
        name=name,
        timezone=timezone,
        no_show_minutes=no_show_minutes,
        key_id=key.id,
        opening_hours=hours,
    )
    with _savepoint(session, f"site {slug!r} already exists"):
        session.add(site)
    return site


def get_site_by_slug(session: Session, slug: str) -> SiteRow:
    site = session.scalars(select(SiteRow).where(SiteRow.slug == slug)).one_or_none()
    if site is None:
        raise NotFound("Site", slug)
    return site


def list_sites(session: Session) -> list[SiteRow]:
    return list(session.scalars(select(SiteRow).order_by(SiteRow.id)))


def update_site(
    session: Session,
    site_id: int,
    *,
    name: str | _Unset = UNSET,
    timezone: str | _Unset = UNSET,
    no_show_minutes: int | _Unset = UNSET,
    opening_hours: Mapping[str, Any] | _Unset | None = UNSET,
) -> SiteRow:
    """Change a site; `opening_hours` None goes back to business hours."""
    site = get(session, SiteRow, site_id)
    if not isinstance(timezone, _Unset):
        check_timezone(timezone)
    if not isinstance(no_show_minutes, _Unset):
        _check_minutes(no_show_minutes, "no-show minutes")
    if isinstance(opening_hours, Mapping):
        opening_hours = check_schedule(opening_hours)
    _update(
        session,
        site,
        "site update clashes",
        {
            "name": name,
            "timezone": timezone,
            "no_show_minutes": no_show_minutes,
            "opening_hours": opening_hours,
        },
    )
    return site


def add_holiday(session: Session, site_id: int, day: date, name: str = "") -> HolidayRow:
    """Mark local date `day` a holiday at the site; Conflict if it already is."""
    get(session, SiteRow, site_id)
    holiday = HolidayRow(site_id=site_id, day=day, name=name)
    with _savepoint(session, f"{day.isoformat()} is already a holiday at site {site_id}"):
        session.add(holiday)
    return holiday


def remove_holiday(session: Session, site_id: int, day: date) -> None:
    holiday = session.get(HolidayRow, (site_id, day))
    if holiday is None:
        raise NotFound("Holiday", f"{site_id}/{day.isoformat()}")
    session.delete(holiday)
    session.flush()


def list_holidays(session: Session, site_id: int) -> list[HolidayRow]:
    get(session, SiteRow, site_id)
    query = select(HolidayRow).where(HolidayRow.site_id == site_id).order_by(HolidayRow.day)
    return list(session.scalars(query))


def _check_minutes(value: int, what: str, maximum: int = MAX_GRACE_MINUTES) -> int:
    if not 0 <= value <= maximum:
        raise Invalid(f"{what} must be between 0 and {maximum}, not {value}")
    return value


# --- zones, agents, desks, doors ---------------------------------------------------------


def create_zone(session: Session, *, site_id: int, name: str) -> ZoneRow:
    get(session, SiteRow, site_id)
    if not name.strip():
        raise Invalid("a zone needs a name")
    zone = ZoneRow(site_id=site_id, name=name)
    with _savepoint(session, f"zone {name!r} already exists at site {site_id}"):
        session.add(zone)
    return zone


def list_zones(session: Session, site_id: int) -> list[ZoneRow]:
    return list(
        session.scalars(select(ZoneRow).where(ZoneRow.site_id == site_id).order_by(ZoneRow.id))
    )


def update_zone(session: Session, zone_id: int, *, name: str) -> ZoneRow:
    zone = get(session, ZoneRow, zone_id)
    _update(session, zone, f"zone {name!r} already exists", {"name": name})
    return zone


def create_agent(session: Session, *, site_id: int, slug: str) -> AgentRow:
    get(session, SiteRow, site_id)
    check_slug(slug, "agent id")
    agent = AgentRow(site_id=site_id, slug=slug)
    with _savepoint(session, f"agent {slug!r} already exists at site {site_id}"):
        session.add(agent)
    return agent


def issue_agent_password(session: Session, agent_id: int) -> str:
    """Give an agent a new random broker password; returns it (the only time it is seen).

    Only Mosquitto's hash is stored; `ruche broker config` writes it to the broker's accounts.
    """
    agent = get(session, AgentRow, agent_id)
    password = generate_password()
    agent.mqtt_password_hash = hash_password(password)
    return password


def list_agents(session: Session, site_id: int | None = None) -> list[AgentRow]:
    query = select(AgentRow).order_by(AgentRow.id)
    if site_id is not None:
        query = query.where(AgentRow.site_id == site_id)
    return list(session.scalars(query))


def get_agent_by_slug(session: Session, site_id: int, slug: str) -> AgentRow:
    query = select(AgentRow).where(AgentRow.site_id == site_id, AgentRow.slug == slug)
    agent = session.scalars(query).one_or_none()
    if agent is None:
        raise NotFound("Agent", f"{site_id}/{slug}")
    return agent


def _check_agent(session: Session, agent_id: int | None, site_id: int) -> None:
    if agent_id is not None and get(session, AgentRow, agent_id).site_id != site_id:
        raise Invalid(f"agent {agent_id} is at another site: an agent serves its own site only")


def create_desk(
    session: Session,
    *,
    zone_id: int,
    slug: str,
    agent_id: int | None = None,
    x: int | None = None,
    y: int | None = None,
) -> DeskRow:
    """A desk in a zone (and so at the zone's site), optionally read by an agent."""
    zone = get(session, ZoneRow, zone_id)
    check_slug(slug, "desk id")
    _check_agent(session, agent_id, zone.site_id)
    desk = DeskRow(site_id=zone.site_id, zone_id=zone_id, slug=slug, agent_id=agent_id, x=x, y=y)
    with _savepoint(session, f"desk {slug!r} already exists at site {zone.site_id}"):
        session.add(desk)
    return desk


def list_desks(
    session: Session, *, site_id: int | None = None, zone_id: int | None = None
) -> list[DeskRow]:
    query = select(DeskRow).order_by(DeskRow.id)
    if site_id is not None:
        query = query.where(DeskRow.site_id == site_id)
    if zone_id is not None:
        query = query.where(DeskRow.zone_id == zone_id)
    return list(session.scalars(query))


def update_desk(
    session: Session,
    desk_id: int,
    *,
    slug: str | _Unset = UNSET,
    zone_id: int | _Unset = UNSET,
    agent_id: int | _Unset | None = UNSET,
    x: int | _Unset | None = UNSET,
    y: int | _Unset | None = UNSET,
) -> DeskRow:
    """Change a desk; it may move to another zone of the same site only."""
    desk = get(session, DeskRow, desk_id)
    if not isinstance(slug, _Unset):
        check_slug(slug, "desk id")
    if not isinstance(zone_id, _Unset) and get(session, ZoneRow, zone_id).site_id != desk.site_id:
        raise Invalid(f"zone {zone_id} is at another site: a desk moves within its site")
    if not isinstance(agent_id, _Unset):
        _check_agent(session, agent_id, desk.site_id)
    _update(
        session,
        desk,
        f"desk {slug!r} already exists",
        {"slug": slug, "zone_id": zone_id, "agent_id": agent_id, "x": x, "y": y},
    )
    return desk


def create_door(
    session: Session,
    *,
    site_id: int,
    slug: str,
    name: str = "",
    agent_id: int | None = None,
    anti_passback: bool = False,
) -> DoorRow:
    get(session, SiteRow, site_id)
    check_slug(slug, "door id")
    _check_agent(session, agent_id, site_id)
    door = DoorRow(
        site_id=site_id,
        slug=slug,
        name=name,
        agent_id=agent_id,
        anti_passback=anti_passback,
        locked_down=False,
    )
    with _savepoint(session, f"door {slug!r} already exists at site {site_id}"):
        session.add(door)
    return door


def list_doors(
    session: Session, *, site_id: int | None = None, agent_id: int | None = None
) -> list[DoorRow]:
    query = select(DoorRow).order_by(DoorRow.id)
    if site_id is not None:
        query = query.where(DoorRow.site_id == site_id)
    if agent_id is not None:
        query = query.where(DoorRow.agent_id == agent_id)
    return list(session.scalars(query))


def get_door_by_slug(session: Session, site_id: int, slug: str) -> DoorRow:
    door = session.scalars(
        select(DoorRow).where(DoorRow.site_id == site_id, DoorRow.slug == slug)
    ).one_or_none()
    if door is None:
        raise NotFound("Door", f"{site_id}/{slug}")
    return door


def update_door(
    session: Session,
    door_id: int,
    *,
    name: str | _Unset = UNSET,
    agent_id: int | _Unset | None = UNSET,
    anti_passback: bool | _Unset = UNSET,
    locked_down: bool | _Unset = UNSET,
) -> DoorRow:
    door = get(session, DoorRow, door_id)
    if not isinstance(agent_id, _Unset):
        _check_agent(session, agent_id, door.site_id)
    _update(
        session,
        door,
        "door update clashes",
        {
            "name": name,
            "agent_id": agent_id,
            "anti_passback": anti_passback,
            "locked_down": locked_down,
        },
    )
    return door


def set_site_lockdown(session: Session, site_id: int, *, locked_down: bool) -> list[DoorRow]:
    """Lock down (or release) every door of a site; returns the doors."""
    doors = list_doors(session, site_id=get(session, SiteRow, site_id).id)
    for door in doors:
        door.locked_down = locked_down
    session.flush()
    return doors


# --- members and badges ------------------------------------------------------------------


def _check_email(email: str) -> str:
    email = email.strip().lower()
    if not _EMAIL.match(email) or len(email) > 320:
        raise Invalid(f"{email!r} is not an email address")
    return email


def create_member(session: Session, *, name: str, email: str, active: bool = True) -> MemberRow:
    if not name.strip():
        raise Invalid("a member needs a name")
    email = _check_email(email)
    member = MemberRow(name=name.strip(), email=email, active=active)
    with _savepoint(session, f"a member with email {email!r} already exists"):
        session.add(member)
    return member


def list_members(session: Session, *, active: bool | None = None) -> list[MemberRow]:
    query = select(MemberRow).order_by(MemberRow.id)
    if active is not None:
        query = query.where(MemberRow.active == active)
    return list(session.scalars(query))


def update_member(
    session: Session,
    member_id: int,
    *,
    name: str | _Unset = UNSET,
    email: str | _Unset = UNSET,
    active: bool | _Unset = UNSET,
) -> MemberRow:
    member = get(session, MemberRow, member_id)
    if not isinstance(email, _Unset):
        email = _check_email(email)
    _update(
        session,
        member,
        f"a member with email {email!r} already exists",
        {"name": name, "email": email, "active": active},
    )
    return member


def enrol_badge(
    session: Session, member_id: int, site_key: SiteKeyRow, uid: bytes, *, label: str = ""
) -> BadgeRow:
    """Enrol a card for a member under `site_key`; only its token is stored, never `uid`.

    The badge opens the doors of every site using that key. Conflict if the card is already
    enrolled under it (whatever its status: a revoked card stays revoked).
    """
    get(session, MemberRow, member_id)
    try:
        token = badge_token(site_key.key, uid)
    except ValueError as exc:
        raise Invalid(f"cannot enrol this badge: {exc}") from exc
    badge = BadgeRow(
        member_id=member_id,
        key_id=site_key.id,
        token=token,
        status=BadgeStatus.ACTIVE,
        label=label,
        created_at=_now(),
    )
    with _savepoint(session, "this badge is already enrolled (revoke it or reuse it)"):
        session.add(badge)
    return badge


def get_badge_by_token(session: Session, token: str) -> BadgeRow:
    badge = session.scalars(select(BadgeRow).where(BadgeRow.token == token)).one_or_none()
    if badge is None:
        raise NotFound("Badge", token[:8] + "...")
    return badge


def list_badges(session: Session, *, member_id: int | None = None) -> list[BadgeRow]:
    query = select(BadgeRow).order_by(BadgeRow.id)
    if member_id is not None:
        query = query.where(BadgeRow.member_id == member_id)
    return list(session.scalars(query))


def set_badge_status(session: Session, badge_id: int, status: BadgeStatus) -> BadgeRow:
    """Disable, re-activate or revoke a badge; revocation is final."""
    badge = get(session, BadgeRow, badge_id)
    if badge.status is BadgeStatus.REVOKED and status is not BadgeStatus.REVOKED:
        raise Conflict(f"badge {badge_id} is revoked: enrol a new card instead")
    badge.status = status
    session.flush()
    return badge


def revoke_badge(session: Session, badge_id: int) -> BadgeRow:
    """Revoke a badge for good (lost, stolen, member gone)."""
    return set_badge_status(session, badge_id, BadgeStatus.REVOKED)


# --- plans and memberships ---------------------------------------------------------------


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


# --- bookings ----------------------------------------------------------------------------


def book(
    session: Session,
    *,
    member_id: int,
    site_id: int,
    starts_at: datetime,
    ends_at: datetime,
    desk_id: int | None = None,
    zone_id: int | None = None,
    grace_before: int = 0,
    grace_after: int = 0,
) -> BookingRow:
    """Book a desk, or a whole zone (a room), for an active member over [starts_at, ends_at).

    Conflict when an active booking of the same desk or zone intersects that interval
    (touching is fine; grace minutes do not count). Safe under concurrency: see the module
    docstring.
    """
    if (desk_id is None) == (zone_id is None):
        raise Invalid("book either a desk or a zone (a room), not both and not neither")
    starts_at, ends_at = _aware(starts_at, "start"), _aware(ends_at, "end")
    if ends_at <= starts_at:
        raise Invalid("a booking must end after it starts")
    _check_minutes(grace_before, "grace before")
    _check_minutes(grace_after, "grace after")
    if not get(session, MemberRow, member_id).active:
        raise Invalid(f"member {member_id} is inactive: re-activate them to book")
    get(session, SiteRow, site_id)

    resource: type[DeskRow] | type[ZoneRow] = DeskRow if desk_id is not None else ZoneRow
    resource_id = desk_id if desk_id is not None else zone_id
    assert resource_id is not None  # noqa: S101 - established by the first check
    # The lock that makes check-then-insert atomic (PostgreSQL; SQLite holds its write lock).
    locked = session.execute(
        select(resource.id, resource.site_id).where(resource.id == resource_id).with_for_update()
    ).one_or_none()
    if locked is None:
        raise NotFound(resource.__name__, resource_id)
    if locked.site_id != site_id:
        raise Invalid(f"{resource.__name__.lower()} {resource_id} is not at site {site_id}")

    column = BookingRow.desk_id if desk_id is not None else BookingRow.zone_id
    clash = session.scalars(
        select(BookingRow.id)
        .where(
            column == resource_id,
            BookingRow.status == BookingStatus.BOOKED,
            BookingRow.starts_at < ends_at,
            BookingRow.ends_at > starts_at,
        )
        .limit(1)
    ).first()
    if clash is not None:
        raise Conflict(
            f"{resource.__name__.lower()} {resource_id} is already booked over that time "
            f"(booking {clash}): pick another time or another {resource.__name__.lower()}"
        )
    booking = BookingRow(
        member_id=member_id,
        site_id=site_id,
        desk_id=desk_id,
        zone_id=zone_id,
        starts_at=starts_at,
        ends_at=ends_at,
        grace_before=grace_before,
        grace_after=grace_after,
        status=BookingStatus.BOOKED,
        created_at=_now(),
    )
    session.add(booking)
    session.flush()
    return booking


def set_booking_status(session: Session, booking_id: int, status: BookingStatus) -> BookingRow:
    """Cancel, release or mark a booking no-show; only a `booked` booking changes."""
    booking = get(session, BookingRow, booking_id)
    if booking.status is not BookingStatus.BOOKED:
        raise Conflict(f"booking {booking_id} is already {booking.status.value}")
    booking.status = status
    session.flush()
    return booking


def cancel_booking(session: Session, booking_id: int) -> BookingRow:
    return set_booking_status(session, booking_id, BookingStatus.CANCELLED)


def list_bookings(
    session: Session,
    *,
    site_id: int | None = None,
    member_id: int | None = None,
    desk_id: int | None = None,
    status: BookingStatus | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[BookingRow]:
    """Bookings matching every filter given; `since`/`until` keep those intersecting them."""
    query = select(BookingRow).order_by(BookingRow.starts_at, BookingRow.id)
    if site_id is not None:
        query = query.where(BookingRow.site_id == site_id)
    if member_id is not None:
        query = query.where(BookingRow.member_id == member_id)
    if desk_id is not None:
        query = query.where(BookingRow.desk_id == desk_id)
    if status is not None:
        query = query.where(BookingRow.status == status)
    if since is not None:
        query = query.where(BookingRow.ends_at > _aware(since, "since"))
    if until is not None:
        query = query.where(BookingRow.starts_at < _aware(until, "until"))
    return list(session.scalars(query))


# --- day passes --------------------------------------------------------------------------


def add_day_pass(session: Session, *, member_id: int, site_id: int, day: date) -> DayPassRow:
    """Give a member the site for local date `day`; Conflict if they already have it."""
    get(session, MemberRow, member_id)
    get(session, SiteRow, site_id)
    day_pass = DayPassRow(member_id=member_id, site_id=site_id, day=day)
    with _savepoint(session, f"member {member_id} already has a day pass for {day}"):
        session.add(day_pass)
    return day_pass


def list_day_passes(
    session: Session, *, member_id: int | None = None, site_id: int | None = None
) -> list[DayPassRow]:
    query = select(DayPassRow).order_by(DayPassRow.day, DayPassRow.id)
    if member_id is not None:
        query = query.where(DayPassRow.member_id == member_id)
    if site_id is not None:
        query = query.where(DayPassRow.site_id == site_id)
    return list(session.scalars(query))


# --- API keys ----------------------------------------------------------------------------


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
