"""Sites and their keys: the secret each site's badge tokens are HMAC'd under, a site's
timezone, opening hours, no-show minutes, holidays and lockdown."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.broker.tokens import MIN_SITE_KEY_BYTES
from ruche.server.errors import Invalid, NotFound
from ruche.server.registry.base import (
    MAX_GRACE_MINUTES,
    SITE_KEY_BYTES,
    UNSET,
    _now,
    _savepoint,
    _Unset,
    _update,
    check_slug,
    get,
)
from ruche.server.registry.plans import check_schedule
from ruche.server.storage.models import (
    HolidayRow,
    SiteKeyRow,
    SiteRow,
    check_timezone,
)


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


def site_slugs(session: Session) -> list[str]:
    """Every site's slug, in order."""
    return list(session.scalars(select(SiteRow.slug).order_by(SiteRow.slug)))


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
