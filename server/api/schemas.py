"""The REST API's pydantic schemas: one family per entity, as in the FastAPI template.

`XCreate` is what a client posts, `XUpdate` what it patches (every field optional: only
the fields sent change), `XPublic` what it reads back and `XsPublic` one page of them.
Inputs are bounded here, before they reach the registry, so that a value the database
cannot hold (an id past 32 bits, a NUL byte for PostgreSQL, a 300-character name for a
VARCHAR(200), a datetime past year 9999 once in UTC) is a 422, never a 500.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from ruche.broker.topics import ID_PATTERN
from ruche.server.billing.terms import TermsSpec as Terms
from ruche.server.occupancy.utilisation import Bucket, Level
from ruche.server.registry.schedule_spec import ScheduleSpec as Schedule
from ruche.server.storage.enums import AuditKind, AuditSource, BadgeStatus, BookingStatus, Role

MAX_ID = 2**31 - 1
"""Primary keys are 32-bit INTEGER columns on PostgreSQL."""
MAX_MINUTES = 24 * 60
MAX_PAGE = 500
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, tzinfo=UTC)

_PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
"""No control characters: PostgreSQL refuses NUL in text, and names are shown to people."""

RowId = Annotated[int, Field(ge=1, le=MAX_ID, description="A row id.")]
Slug = Annotated[
    str,
    StringConstraints(pattern=f"^{ID_PATTERN}$", max_length=64),
    Field(description="A wire id: 1-64 letters, digits, '_', '.' or '-', starting alphanumeric."),
]
Name = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=_PRINTABLE)]
LongName = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=_PRINTABLE)]
Label = Annotated[str, StringConstraints(max_length=100, pattern=_PRINTABLE)]
Email = Annotated[
    str,
    StringConstraints(max_length=320, pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$"),
]
Timezone = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_+\-/]+$"),
    Field(description="An IANA timezone name, such as 'Europe/Paris'.", examples=["Europe/Paris"]),
]
Minutes = Annotated[int, Field(ge=0, le=MAX_MINUTES)]
GridPosition = Annotated[int, Field(ge=0, le=10_000)]
UidHex = Annotated[
    str,
    StringConstraints(pattern=r"^([0-9A-Fa-f]{2}){1,32}$"),
    Field(description="The card's UID in hex (1-32 bytes); stored only as a keyed HMAC."),
]


def _bounded(value: datetime) -> datetime:
    """An aware instant between EARLIEST and LATEST, converted to UTC."""
    if not EARLIEST <= value <= LATEST:
        raise ValueError("must be between 2000-01-01 and 2999-12-31")
    return value.astimezone(UTC)


Instant = Annotated[
    AwareDatetime,
    AfterValidator(_bounded),
    Field(description="ISO 8601 with an offset (2026-11-23T10:00:00+01:00), years 2000-2999."),
]
Day = Annotated[date, Field(ge=date(2000, 1, 1), le=date(2999, 12, 31))]


class _In(BaseModel):
    """What clients send: unknown fields are refused, so a typo is not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def patch(body: BaseModel, nullable: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The fields a PATCH body sets; null leaves a field unchanged unless it is `nullable`."""
    return {
        name: value
        for name, value in body.model_dump(exclude_unset=True).items()
        if value is not None or name in nullable
    }


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


T = TypeVar("T")


class Page(_Out, Generic[T]):
    data: list[T]
    total: int = Field(description="How many match, over all pages.")
    limit: int
    offset: int


# --- errors and health ---------------------------------------------------------------------


class FieldError(BaseModel):
    loc: list[str | int]
    message: str


class ErrorPublic(BaseModel):
    """Every 4xx: `detail` says what was wrong and what to do."""

    detail: str
    errors: list[FieldError] = Field(
        default_factory=list, description="For 422: one entry per refused field."
    )


class HealthPublic(BaseModel):
    status: Literal["ok"] = "ok"


# --- sites -------------------------------------------------------------------------------


class SiteCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"slug": "nice", "name": "Nice", "timezone": "Europe/Paris"}]
        },
    )

    slug: Slug
    name: LongName
    timezone: Timezone
    no_show_minutes: Minutes = 15
    share_key_with: RowId | None = Field(
        default=None,
        description="Another site whose badge key this site shares, so one enrolment opens both.",
    )
    opening_hours: Schedule | None = Field(
        default=None,
        description="When the site is open (utilisation measures against it), in a plan "
        "schedule's format; omitted: business hours.",
    )


class SiteUpdate(_In):
    name: LongName | None = None
    timezone: Timezone | None = None
    no_show_minutes: Minutes | None = None
    opening_hours: Schedule | None = Field(
        default=None, description="New opening hours; {'kind': 'business_hours'} resets them."
    )


class SitePublic(_Out):
    id: int
    slug: str
    name: str
    timezone: str
    no_show_minutes: int
    opening_hours: dict[str, Any] | None = Field(description="None: business hours.")


class SitesPublic(Page[SitePublic]):
    pass


class HolidayCreate(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"day": "2030-05-01", "name": "May Day"}]}
    )

    day: Day
    name: Label = ""


class HolidayPublic(_Out):
    site_id: int
    day: date
    name: str


class HolidaysPublic(Page[HolidayPublic]):
    pass


class LockdownPublic(BaseModel):
    site_id: int
    locked_down: bool
    door_ids: list[int] = Field(description="The doors whose state was set.")
    audit_id: int


# --- zones, desks, doors, agents ---------------------------------------------------------


class ZoneCreate(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "meeting room"}]}
    )

    name: Name


class ZoneUpdate(_In):
    name: Name


class ZonePublic(_Out):
    id: int
    site_id: int
    name: str


class ZonesPublic(Page[ZonePublic]):
    pass


class AgentCreate(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"slug": "pi-2"}]})

    slug: Slug


class AgentPublic(_Out):
    id: int
    site_id: int
    slug: str


class AgentsPublic(Page[AgentPublic]):
    pass


class DeskCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"zone_id": 1, "slug": "d2", "x": 3, "y": 1}]},
    )

    zone_id: RowId
    slug: Slug
    agent_id: RowId | None = None
    x: GridPosition | None = None
    y: GridPosition | None = None


class DeskUpdate(_In):
    slug: Slug | None = None
    zone_id: RowId | None = None
    agent_id: RowId | None = None
    x: GridPosition | None = None
    y: GridPosition | None = None


class DeskPublic(_Out):
    id: int
    site_id: int
    zone_id: int
    slug: str
    agent_id: int | None
    x: int | None
    y: int | None


class DesksPublic(Page[DeskPublic]):
    pass


class DoorCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"slug": "back", "name": "Back door", "agent_id": 1}]},
    )

    slug: Slug
    name: Label = ""
    agent_id: RowId | None = None
    anti_passback: bool = False


class DoorUpdate(_In):
    """Lockdown is not here: it has its own endpoints, which also command the agent."""

    name: Label | None = None
    agent_id: RowId | None = None
    anti_passback: bool | None = None


class DoorPublic(_Out):
    id: int
    site_id: int
    slug: str
    name: str
    agent_id: int | None
    anti_passback: bool
    locked_down: bool


class DoorsPublic(Page[DoorPublic]):
    pass


class UnlockRequest(_In):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"ms": 3000}]})

    ms: int = Field(default=5000, ge=1, le=600_000, description="How long to release the strike.")


class UnlockPublic(BaseModel):
    door_id: int
    ms: int
    audit_id: int


# --- members, badges ---------------------------------------------------------------------


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


# --- plans and memberships ---------------------------------------------------------------


class PlanCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Part time",
                    "site_ids": [1],
                    "schedule": {"kind": "custom", "days": {"mon": ["08:00-12:00"]}},
                }
            ]
        },
    )

    name: Name
    site_ids: Annotated[list[RowId], Field(max_length=1000)] = Field(default_factory=list)
    schedule: Schedule
    booking_only: bool = False


class PlanUpdate(_In):
    name: Name | None = None
    site_ids: Annotated[list[RowId], Field(max_length=1000)] | None = None
    schedule: Schedule | None = None
    booking_only: bool | None = None


class PlanPublic(_Out):
    id: int
    name: str
    site_ids: list[int]
    schedule: Schedule
    booking_only: bool


class PlansPublic(Page[PlanPublic]):
    pass


class MembershipCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"member_id": 1, "plan_id": 1, "starts_at": "2030-04-01T00:00:00+02:00"}]
        },
    )

    member_id: RowId
    plan_id: RowId
    starts_at: Instant
    ends_at: Instant | None = None


class MembershipUpdate(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"ends_at": "2030-12-31T00:00:00+01:00"}]}
    )

    ends_at: Instant = Field(description="When the membership ends (exclusive).")


class MembershipPublic(_Out):
    id: int
    member_id: int
    plan_id: int
    starts_at: datetime
    ends_at: datetime | None


class MembershipsPublic(Page[MembershipPublic]):
    pass


# --- bookings and day passes -------------------------------------------------------------


class BookingCreate(_In):
    """A booking is not edited: cancel it and book again, so the overlap rule stays one rule."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "member_id": 1,
                    "site_id": 1,
                    "desk_id": 1,
                    "starts_at": "2030-03-12T09:00:00+01:00",
                    "ends_at": "2030-03-12T13:00:00+01:00",
                    "grace_before": 10,
                }
            ]
        },
    )

    member_id: RowId | None = Field(
        default=None, description="Whose booking; a member key books for itself when omitted."
    )
    site_id: RowId
    desk_id: RowId | None = None
    zone_id: RowId | None = None
    starts_at: Instant
    ends_at: Instant
    grace_before: Minutes = 0
    grace_after: Minutes = 0


class BookingPublic(_Out):
    id: int
    member_id: int
    site_id: int
    desk_id: int | None
    zone_id: int | None
    starts_at: datetime
    ends_at: datetime
    grace_before: int
    grace_after: int
    status: BookingStatus
    created_at: datetime


class BookingsPublic(Page[BookingPublic]):
    pass


class DayPassCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"member_id": 1, "site_id": 1, "day": "2030-03-13"}]},
    )

    member_id: RowId
    site_id: RowId
    day: Day


class DayPassPublic(_Out):
    id: int
    member_id: int
    site_id: int
    day: date


class DayPassesPublic(Page[DayPassPublic]):
    pass


# --- API keys ----------------------------------------------------------------------------


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


# --- audit -------------------------------------------------------------------------------


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


# --- bookings against reality, utilisation -----------------------------------------------


class DeskSessionPublic(_Out):
    """A desk's occupied interval, derived from its sensor's events."""

    id: int
    desk: str = Field(description="The desk's id on the wire.")
    agent: str
    opened_seq: int = Field(description="With the site and desk, the session's stable key.")
    start: datetime
    end: datetime | None = Field(description="None while the desk is still occupied.")
    closed_by: str
    suspect: bool
    reason: str | None
    member_id: int | None
    attributed_by: str = Field(description="badge, booking or none.")
    booking_id: int | None


class DeskSessionsPublic(Page[DeskSessionPublic]):
    pass


class UtilisationFiguresPublic(BaseModel):
    """Durations in seconds; see docs/occupancy.md for each figure's definition."""

    desks: int
    opening_s: float = Field(description="How long the site was open (up to now).")
    capacity_s: float = Field(description="opening_s times the number of desks.")
    occupied_s: float = Field(description="Desk-seconds occupied within opening hours.")
    occupied_share: float | None = Field(description="occupied_s / capacity_s; null if 0.")
    after_hours_s: float = Field(description="Desk-seconds occupied outside opening hours.")
    suspect_s: float = Field(description="Desk-seconds of suspect sessions in opening hours.")
    booked_s: float = Field(description="Desk-seconds booked within opening hours.")
    booked_used_s: float = Field(description="Booked desk-seconds that were occupied.")
    used_unbooked_s: float = Field(description="Occupied desk-seconds no booking covered.")
    peak_desks: int = Field(description="Most desks occupied at one instant.")
    peak_people: int | None = Field(description="Most members in at one instant (site only).")
    bookings: int = Field(description="Desk bookings starting in the bucket.")
    no_shows: int = Field(description="Of those, released as no-shows.")
    no_show_rate: float | None = Field(description="no_shows / bookings; null without any.")


class UtilisationBucketPublic(UtilisationFiguresPublic):
    start: datetime = Field(description="Local time with its UTC offset.")
    end: datetime


class UtilisationSeriesPublic(BaseModel):
    level: Level
    id: int = Field(description="The site's, zone's or desk's row id.")
    key: str = Field(description="The site's or desk's id on the wire, or the zone's name.")
    buckets: list[UtilisationBucketPublic]
    total: UtilisationFiguresPublic = Field(description="The whole range.")


class UtilisationPublic(BaseModel):
    site_id: int
    timezone: str
    from_day: date = Field(description="The first local date.")
    to_day: date = Field(description="The local date the range ends at (excluded).")
    bucket: Bucket
    by: Level
    opening_hours: Schedule = Field(description="The schedule the site's hours follow.")
    counted_until: datetime = Field(description="Nothing after this instant is counted.")
    series: list[UtilisationSeriesPublic]


# --- billing -------------------------------------------------------------------------------

Amount = Annotated[
    str,
    StringConstraints(pattern=r"^\d{1,9}(\.\d{1,6})?$"),
    Field(description="A decimal amount as a string, such as '12.50' (exact: never a float)."),
]
Rate = Annotated[
    str,
    StringConstraints(pattern=r"^(0(\.\d{1,6})?|1(\.0{1,6})?)$"),
    Field(description="A tax rate as a fraction from 0 to 1, such as '0.2' for 20 %."),
]
CurrencyCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    Field(description="An ISO 4217 code, such as 'EUR'.", examples=["EUR"]),
]
PeriodText = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4}-\d{2}$"),
    Field(description="A billing period: a calendar month, YYYY-MM.", examples=["2026-11"]),
]


class SiteBillingUpdate(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"currency": "EUR", "tax_rate": "0.2"}]}
    )

    currency: CurrencyCode | None = Field(
        default=None, description="Fixed once the site has price versions."
    )
    tax_rate: Rate | None = Field(
        default=None, description="The rate new price versions take unless given one."
    )


class SiteBillingPublic(BaseModel):
    site_id: int
    currency: str
    tax_rate: str
    closed_through: str | None = Field(description="The latest period closed at the site.")


class PriceVersionCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "plan_id": 1,
                    "valid_from": "2030-04-01",
                    "terms": {"kind": "day_pass", "price": "15.00"},
                }
            ]
        },
    )

    plan_id: RowId
    valid_from: Day = Field(description="The local date it is in force from.")
    terms: Terms
    tax_rate: Rate | None = Field(default=None, description="Omitted: the site's tax rate.")
    label: Name | None = Field(
        default=None,
        description="Its name on invoices, fixed for good; omitted: '{plan} from {valid_from}'.",
    )


class PriceVersionPublic(_Out):
    id: int
    plan_id: int
    site_id: int
    label: str
    valid_from: date
    terms: Terms
    tax_rate: str
    created_at: datetime


class PriceVersionsPublic(Page[PriceVersionPublic]):
    pass


class CloseRequest(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"period": "2026-11", "site_id": 1}]}
    )

    period: PeriodText
    site_id: RowId | None = Field(
        default=None, description="Omitted: every site (a manager's own site)."
    )


class InvoicePublic(_Out):
    """An issued invoice's heading and totals; amounts as decimal strings."""

    id: int
    key: str = Field(description="SHA-256 of member, site, period and price versions.")
    number: str
    member_id: int
    member_name: str
    site_id: int
    site_name: str
    period: str
    status: str
    currency: str
    subtotal: str
    tax: str
    total: str
    issued_at: datetime


class InvoicesPublic(Page[InvoicePublic]):
    pass


class InvoiceLinePublic(BaseModel):
    key: str
    period: str = Field(description="The month charged: earlier for an adjustment.")
    description: str
    quantity: str
    unit: str
    unit_price: str
    per: int = Field(description="The unit price is for this many units.")
    net: str
    tax_rate: str
    version: str
    adjustment: bool
    days: list[date] = Field(description="The local days behind the line.")
    sessions: list[str] = Field(description="The visits and desk sessions behind the line.")


class InvoiceTaxPublic(BaseModel):
    rate: str
    base: str
    tax: str


class HeldBackPublic(BaseModel):
    id: str = Field(description="The visit or desk session.")
    reason: str = Field(description="stuck_occupied (suspect), open, ...")
    days: list[date]


class InvoiceDetailPublic(InvoicePublic):
    timezone: str
    versions: list[str]
    lines: list[InvoiceLinePublic]
    taxes: list[InvoiceTaxPublic]
    held_back: list[HeldBackPublic] = Field(description="Not billed: awaiting review or an end.")


class SiteClosePublic(BaseModel):
    site_id: int
    site: str
    closed_at: datetime
    issued_now: bool = Field(description="False: the period was closed before; nothing new.")
    invoices: int


class SkippedPublic(BaseModel):
    site: str
    member_id: int
    reason: str


class ClosePublic(BaseModel):
    period: str
    sites: list[SiteClosePublic]
    invoices: list[InvoicePublic]
    skipped: list[SkippedPublic] = Field(description="Members with usage no invoice bills.")


class UsageDayPublic(BaseModel):
    day: date
    minutes: int = Field(description="Billable minutes, rounded down.")
    first_presence: datetime
    sessions: list[str] = Field(description="The visits and desk sessions behind the day.")


class SiteUsagePublic(BaseModel):
    site_id: int
    site: str
    timezone: str
    days: list[UsageDayPublic]
    held_back: list[HeldBackPublic]


class UsagePublic(BaseModel):
    member_id: int
    period: str
    sites: list[SiteUsagePublic]
