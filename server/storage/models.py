"""The SQL schema as SQLAlchemy 2 models: the registry, bookings, API keys and the audit log.

Conventions, the same on SQLite and PostgreSQL:

- Instants are timezone-aware and UTC (`UTCDateTime`): stored as UTC, returned aware.
  Local dates (holidays, day passes) are plain `date`s in the site's timezone.
- Enumerations are VARCHAR plus a CHECK constraint, not native PostgreSQL enums, so
  adding a value is a plain migration on both databases.
- Foreign keys refuse to delete what is still referenced (a member with bookings, a site
  with doors); only owned details cascade (a site's holidays, a plan's site list), and
  unplugging an agent leaves its doors and desks unassigned.
- The audit log names things by value (site, agent, door slugs, member id) and has no
  foreign keys: it must outlive, unchanged, whatever it mentions.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates

from ruche.server.errors import Invalid
from ruche.server.storage.enums import (
    AuditKind,
    AuditSource,
    BadgeStatus,
    BookingStatus,
    InvoiceStatus,
    Role,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID_LENGTH = 64  # site, agent, desk and door ids, as on the wire (ruche.broker.topics.ID_PATTERN)
TOKEN_LENGTH = 64  # HMAC-SHA256 as lowercase hex
HASH_LENGTH = 64  # SHA-256 as lowercase hex


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware datetime, stored as UTC and returned aware in UTC on every database.

    SQLite has no timezone type and SQLAlchemy's SQLite DATETIME drops tzinfo, so there
    the value is stored as naive UTC text (fixed width, so it sorts and compares as time
    does) and made aware again on the way out. Naive input is refused: a naive datetime
    in a door-access system is a bug waiting for the next DST change.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise Invalid(f"naive datetime {value.isoformat()}: give a timezone-aware one")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self,
        value: datetime | None,
        dialect: Dialect,  # noqa: ARG002 - the same on every database
    ) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _enum(cls: type[StrEnum], name: str) -> sa.Enum:
    return sa.Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        validate_strings=True,
        values_callable=lambda members: [m.value for m in members],
    )


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


# --- sites and what is in them -----------------------------------------------------------


class SiteKeyRow(Base):
    """The key badge UIDs are HMAC'd under (`ruche.broker.badge_token`).

    Several sites may share one key, so one enrolment of a card opens all of them; tokens
    made under one key mean nothing under another. Kept in the database for a single-machine
    install; production should keep it in a secret store and this table only a reference.
    """

    __tablename__ = "site_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[bytes] = mapped_column(sa.LargeBinary(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class SiteRow(Base):
    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(sa.String(ID_LENGTH), unique=True)
    """The site id in MQTT topics (`ruche/v1/{site}/...`)."""
    name: Mapped[str] = mapped_column(sa.String(200))
    timezone: Mapped[str] = mapped_column(sa.String(64))
    """IANA name (`Europe/Paris`): schedules, holidays and day passes are in local time."""
    no_show_minutes: Mapped[int] = mapped_column(default=15)
    """A booking with no presence by its start plus this many minutes is released."""
    opening_hours: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    """When the site is open, in a plan schedule's format (`registry.check_schedule`);
    None: business hours. Utilisation measures against it."""
    key_id: Mapped[int] = mapped_column(sa.ForeignKey("site_keys.id", ondelete="RESTRICT"))
    currency: Mapped[str] = mapped_column(sa.String(3), default="EUR", server_default="EUR")
    """ISO 4217 code the site bills in (`ruche.server.billing.money.Currency`); fixed once it
    has prices."""
    tax_rate: Mapped[str] = mapped_column(sa.String(16), default="0", server_default="0")
    """The tax rate new price versions take unless given one: a decimal fraction, `"0.2"`."""

    holidays: Mapped[list[HolidayRow]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="HolidayRow.day"
    )

    @validates("timezone")
    def _valid_timezone(self, _key: str, value: str) -> str:
        return check_timezone(value)

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def check_timezone(name: str) -> str:
    """`name` if it is an IANA timezone this machine knows, else Invalid."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(
            f"unknown timezone {name!r}: use an IANA name such as 'Europe/Paris'"
        ) from exc
    return name


class HolidayRow(Base):
    """A local date on which a site's business-hours schedules do not open it."""

    __tablename__ = "site_holidays"

    site_id: Mapped[int] = mapped_column(
        sa.ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[date] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")


class ZoneRow(Base):
    """An area of a site: an open space of desks, or a room booked as a whole."""

    __tablename__ = "zones"
    __table_args__ = (sa.UniqueConstraint("site_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="RESTRICT"))
    name: Mapped[str] = mapped_column(sa.String(100))


class AgentRow(Base):
    """An edge agent (a Pi): it drives the doors and reads the desks that point at it."""

    __tablename__ = "agents"
    __table_args__ = (sa.UniqueConstraint("site_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="RESTRICT"))
    slug: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    """The agent id in MQTT topics and its broker account name."""
    mqtt_password_hash: Mapped[str | None] = mapped_column(sa.String(255))
    """Mosquitto's `$7$` hash of the agent's broker password; None until one is issued."""
    broker_disabled: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    """Its broker account is disabled: Mosquitto refuses it (`ruche admin agent disable`)."""


class DeskRow(Base):
    __tablename__ = "desks"
    __table_args__ = (sa.UniqueConstraint("site_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="RESTRICT"))
    zone_id: Mapped[int] = mapped_column(sa.ForeignKey("zones.id", ondelete="RESTRICT"))
    slug: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    """The desk id in MQTT topics."""
    agent_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    x: Mapped[int | None]
    """Grid position on the floor page, if placed."""
    y: Mapped[int | None]
    wiring: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    """Its sensor on the agent's Pi (`ruche.broker.DeskSensor` as JSON); None: not wired,
    left out of the agent's config."""


class DoorRow(Base):
    __tablename__ = "doors"
    __table_args__ = (sa.UniqueConstraint("site_id", "slug"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="RESTRICT"))
    slug: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    """The door id in MQTT topics."""
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    agent_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("agents.id", ondelete="SET NULL"), index=True
    )
    anti_passback: Mapped[bool] = mapped_column(default=False)
    locked_down: Mapped[bool] = mapped_column(default=False)
    wiring: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    """Its reader, strike and contact on the agent's Pi (`ruche.broker.DoorHardware` as
    JSON); None: not wired, left out of the agent's config."""


# --- members, badges, plans --------------------------------------------------------------


class MemberRow(Base):
    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    active: Mapped[bool] = mapped_column(default=True)


class BadgeRow(Base):
    """A card enrolled for a member, known only by its token: never the raw UID."""

    __tablename__ = "badges"

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(
        sa.ForeignKey("members.id", ondelete="RESTRICT"), index=True
    )
    key_id: Mapped[int] = mapped_column(sa.ForeignKey("site_keys.id", ondelete="RESTRICT"))
    token: Mapped[str] = mapped_column(sa.String(TOKEN_LENGTH), unique=True)
    """`badge_token(site key, UID)`: HMAC-SHA256, lowercase hex."""
    status: Mapped[BadgeStatus] = mapped_column(
        _enum(BadgeStatus, "badge_status"), default=BadgeStatus.ACTIVE
    )
    label: Mapped[str] = mapped_column(sa.String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


plan_sites = sa.Table(
    "plan_sites",
    Base.metadata,
    sa.Column("plan_id", sa.ForeignKey("plans.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("site_id", sa.ForeignKey("sites.id", ondelete="CASCADE"), primary_key=True),
)


class PlanRow(Base):
    """What a membership gives: which sites, when (the access schedule), booking only or not.

    `schedule` is JSON, in the site's local time (see `registry.check_schedule`):
    `{"kind": "24/7"}`, `{"kind": "business_hours"}` or
    `{"kind": "custom", "days": {"mon": ["08:00-12:00", "13:00-19:00"], ...}}`.
    A `booking_only` plan opens doors only within the member's bookings.
    """

    __tablename__ = "plans"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)
    schedule: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    booking_only: Mapped[bool] = mapped_column(default=False)

    sites: Mapped[list[SiteRow]] = relationship(secondary=plan_sites, order_by="SiteRow.id")


class MembershipRow(Base):
    """A member on a plan from `starts_at` until `ends_at` (exclusive; None: open-ended)."""

    __tablename__ = "memberships"
    __table_args__ = (sa.CheckConstraint("ends_at IS NULL OR ends_at > starts_at", name="ordered"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(
        sa.ForeignKey("members.id", ondelete="RESTRICT"), index=True
    )
    plan_id: Mapped[int] = mapped_column(sa.ForeignKey("plans.id", ondelete="RESTRICT"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class BookingRow(Base):
    """A desk, or a whole zone (a room), held for a member over [starts_at, ends_at).

    The grace minutes widen the door-access window only; they never block the next booking.
    """

    __tablename__ = "bookings"
    __table_args__ = (
        sa.CheckConstraint("ends_at > starts_at", name="ordered"),
        sa.CheckConstraint("(desk_id IS NULL) <> (zone_id IS NULL)", name="one_resource"),
        sa.CheckConstraint("grace_before >= 0 AND grace_after >= 0", name="grace"),
        sa.Index(None, "desk_id", "starts_at"),
        sa.Index(None, "zone_id", "starts_at"),
        sa.Index(None, "member_id", "starts_at"),
        sa.Index(None, "site_id", "starts_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="RESTRICT"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="RESTRICT"))
    desk_id: Mapped[int | None] = mapped_column(sa.ForeignKey("desks.id", ondelete="RESTRICT"))
    zone_id: Mapped[int | None] = mapped_column(sa.ForeignKey("zones.id", ondelete="RESTRICT"))
    starts_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ends_at: Mapped[datetime] = mapped_column(UTCDateTime())
    grace_before: Mapped[int] = mapped_column(default=0)
    """Minutes before `starts_at` during which the booking already opens the doors."""
    grace_after: Mapped[int] = mapped_column(default=0)
    """Minutes after `ends_at` during which it still does."""
    status: Mapped[BookingStatus] = mapped_column(
        _enum(BookingStatus, "booking_status"), default=BookingStatus.BOOKED
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class DayPassRow(Base):
    """A member's access to a site for one local day, whatever their plan says."""

    __tablename__ = "day_passes"
    __table_args__ = (sa.UniqueConstraint("member_id", "site_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="RESTRICT"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="RESTRICT"))
    day: Mapped[date]
    """A date in the site's timezone."""


class ApiKeyRow(Base):
    """A REST API key: only its public prefix and the SHA-256 of the whole key are kept.

    The secret part is 256 random bits, so a plain SHA-256 is enough (no password-style
    stretching needed: there is nothing to guess). Managers are bound to a site, members
    to themselves.
    """

    __tablename__ = "api_keys"
    __table_args__ = (
        sa.CheckConstraint(
            "(role = 'manager') = (site_id IS NOT NULL)"
            " AND (role = 'member') = (member_id IS NOT NULL)",
            name="scope",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), default="")
    prefix: Mapped[str] = mapped_column(sa.String(16), unique=True)
    hash: Mapped[str] = mapped_column(sa.String(HASH_LENGTH))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    site_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sites.id", ondelete="RESTRICT"))
    member_id: Mapped[int | None] = mapped_column(sa.ForeignKey("members.id", ondelete="RESTRICT"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


# --- audit log ---------------------------------------------------------------------------


class AuditRow(Base):
    """One line of the append-only, hash-chained audit log (see `ruche.server.access.audit`).

    `id` is assigned by `audit.append` (the head's last id plus one), so ids have no gaps
    and `hash` covers the id: a row renumbered, edited or deleted breaks the chain.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        sa.UniqueConstraint("site", "agent", "agent_seq"),
        sa.Index(None, "member_id", "id"),
        sa.Index(None, "site", "door", "id"),
        sa.Index(None, "site", "id"),  # a site's log, newest first (its audit page)
        sa.Index(None, "decided_at"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    kind: Mapped[AuditKind] = mapped_column(_enum(AuditKind, "audit_kind"))
    source: Mapped[AuditSource] = mapped_column(_enum(AuditSource, "audit_source"))
    site: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    agent: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH))
    door: Mapped[str | None] = mapped_column(sa.String(ID_LENGTH))
    token: Mapped[str | None] = mapped_column(sa.String(TOKEN_LENGTH))
    member_id: Mapped[int | None]
    allowed: Mapped[bool | None]
    reason: Mapped[str | None] = mapped_column(sa.String(64))
    """Why a tap was denied or allowed, the alarm (`forced`, `held_open`), ..."""
    actor: Mapped[str | None] = mapped_column(sa.String(100))
    """Who asked, for remote unlocks and lockdowns (an API key's name, `cli`)."""
    agent_seq: Mapped[int | None] = mapped_column(sa.BigInteger)
    """The agent's event seq when the row comes from an agent event: redelivery is a no-op."""
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime())
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    prev_hash: Mapped[str] = mapped_column(sa.String(HASH_LENGTH))
    hash: Mapped[str] = mapped_column(sa.String(HASH_LENGTH), unique=True)


class AuditHeadRow(Base):
    """The chain's head: one row, locked by every append so that appends never fork.

    It also records the last id, so deleting the newest rows is detected too.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    last_id: Mapped[int] = mapped_column(sa.BigInteger)
    hash: Mapped[str] = mapped_column(sa.String(HASH_LENGTH))


AUDIT_HEAD_ID = 1
GENESIS_HASH = "0" * HASH_LENGTH
"""`prev_hash` of the first row, and the head's hash while the log is empty."""


class StoredEventRow(Base):
    """Every agent event the ingestion has made durable, once: the source of sessions,
    utilisation and billing, and of InfluxDB points if they must be written again."""

    __tablename__ = "events"
    __table_args__ = (sa.Index("ix_events_device_ts", "site", "device", "ts"),)

    site: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    agent: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    channel: Mapped[str] = mapped_column(sa.String(16))
    """presence, desk_badge, tap or door_event."""
    device: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    """The desk or door id."""
    kind: Mapped[str] = mapped_column(sa.String(32))
    """occupied/vacant for presence, the door event's kind, tap, desk_badge."""
    ts: Mapped[datetime] = mapped_column(UTCDateTime())
    """The agent's time of the event."""
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    payload: Mapped[str] = mapped_column(sa.Text)
    """The event as validated, in its wire JSON."""


class RefusedEventRow(Base):
    """An agent event refused for what it claims (a desk or door not the agent's): kept by
    key so the agent's acked seq moves past it (its outbox would resend it forever
    otherwise), and so an operator can see what was refused and why."""

    __tablename__ = "refused_events"

    site: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    agent: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    seq: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    channel: Mapped[str] = mapped_column(sa.String(16))
    device: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    reason: Mapped[str] = mapped_column(sa.String(32))
    """`unknown_site`, `unknown_device` or `not_owner` (ruche.server.registry.ownership.Refusal)."""
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AgentProgressRow(Base):
    """Per agent, the highest seq up to which every event is stored: what `ack` says."""

    __tablename__ = "agent_progress"

    site: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    agent: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    acked_seq: Mapped[int] = mapped_column(sa.BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class OccupancyDirtyRow(Base):
    """Per site, the earliest event time stored since occupancy was last refreshed.

    Ingestion lowers it in the same transaction that stores the events, and the refresh
    clears it once it has written what it read: so the refresh recomputes sessions and
    visits from there on instead of from the site's whole history, and no committed
    event is ever missed.
    """

    __tablename__ = "occupancy_dirty"

    site: Mapped[str] = mapped_column(sa.String(ID_LENGTH), primary_key=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    version: Mapped[int] = mapped_column(sa.BigInteger, default=1)
    """Moves on every batch: a refresh clears the mark only if no batch came since it read it."""


class DeskSessionRow(Base):
    """A desk's occupied interval, derived from its events (`ruche.server.occupancy.sessions`) and
    attributed to a member; recomputed whole, so rows are never edited by hand."""

    __tablename__ = "desk_sessions"
    __table_args__ = (
        sa.UniqueConstraint("site", "agent", "desk", "opened_seq"),
        sa.Index("ix_desk_sessions_site_start", "site", "start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    agent: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    desk: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    opened_seq: Mapped[int] = mapped_column(sa.BigInteger)
    """The seq of the event that opened it: with the desk, a key that survives recomputing."""
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """None while the desk is still occupied."""
    closed_by: Mapped[str] = mapped_column(sa.String(16))
    suspect: Mapped[bool]
    """A sensor stuck occupied: held for review, not billed blindly."""
    reason: Mapped[str | None] = mapped_column(sa.String(64))
    member_id: Mapped[int | None]
    attributed_by: Mapped[str] = mapped_column(sa.String(16))
    booking_id: Mapped[int | None]


class VisitRow(Base):
    """A member's stay at a site, derived from door taps
    (`ruche.server.occupancy.sessions.derive_visits`); recomputed whole, so rows are never
    edited by hand.

    `(site, entry_agent, entry_seq)`, the visit's first entry tap, is the key that survives
    recomputing: billing names visits by it, not by `id`.
    """

    __tablename__ = "visits"
    __table_args__ = (
        sa.UniqueConstraint("site", "entry_agent", "entry_seq"),
        sa.Index("ix_visits_site_start", "site", "start"),
        sa.Index("ix_visits_member_start", "member_id", "start"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    member_id: Mapped[int]
    entry_agent: Mapped[str] = mapped_column(sa.String(ID_LENGTH))
    entry_seq: Mapped[int] = mapped_column(sa.BigInteger)
    entries: Mapped[int]
    """How many allowed entry taps were merged into it (re-taps, a second door)."""
    start: Mapped[datetime] = mapped_column(UTCDateTime())
    end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """None while the visit is still open."""
    closed_by: Mapped[str] = mapped_column(sa.String(16))
    """exit, desk_session, next_entry, max_visit or open."""


# --- billing -----------------------------------------------------------------------------

MONEY_LENGTH = 40
"""Amounts, prices and rates are stored as canonical decimal text (`money.decimal_text`):
exact on both databases, where SQLite would turn a NUMERIC into a float."""
PERIOD_LENGTH = 7  # "2026-11"


class PriceVersionRow(Base):
    """A plan's prices at one site from local date `valid_from` until the next version's.

    Never edited: a price change is a new version, so a day is always priced by the
    version in force on it. `label` is the version's id in invoice keys and lines.
    """

    __tablename__ = "price_versions"
    __table_args__ = (
        sa.UniqueConstraint("plan_id", "site_id", "valid_from"),
        sa.UniqueConstraint("plan_id", "site_id", "label"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(sa.ForeignKey("plans.id", ondelete="RESTRICT"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="RESTRICT"), index=True)
    label: Mapped[str] = mapped_column(sa.String(100))
    valid_from: Mapped[date]
    """A local date of the site."""
    terms: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    """The plan terms as `billing.terms_json` writes them (`{"kind": "monthly", ...}`)."""
    tax_rate: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BillingCloseRow(Base):
    """A period closed at a site: its invoices are issued, and it closes only once."""

    __tablename__ = "billing_closes"

    site_id: Mapped[int] = mapped_column(
        sa.ForeignKey("sites.id", ondelete="RESTRICT"), primary_key=True
    )
    period: Mapped[str] = mapped_column(sa.String(PERIOD_LENGTH), primary_key=True)
    closed_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InvoiceRow(Base):
    """An issued invoice: `document` is the pure `Invoice.to_json()`, stored once under `key`.

    The member's and the site's names are kept as they were at issue, so the document a
    member was sent can be produced again unchanged.
    """

    __tablename__ = "invoices"
    __table_args__ = (
        sa.Index("ix_invoices_site_period", "site_id", "period"),
        sa.Index("ix_invoices_member_period", "member_id", "period"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(HASH_LENGTH), unique=True)
    number: Mapped[str] = mapped_column(sa.String(100), unique=True)
    """For people: `{site}-{period}-{n:04d}`, numbered in member order within the close."""
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="RESTRICT"))
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="RESTRICT"))
    period: Mapped[str] = mapped_column(sa.String(PERIOD_LENGTH))
    status: Mapped[InvoiceStatus] = mapped_column(
        _enum(InvoiceStatus, "invoice_status"), default=InvoiceStatus.ISSUED
    )
    currency: Mapped[str] = mapped_column(sa.String(3))
    subtotal: Mapped[str] = mapped_column(sa.String(MONEY_LENGTH))
    tax: Mapped[str] = mapped_column(sa.String(MONEY_LENGTH))
    total: Mapped[str] = mapped_column(sa.String(MONEY_LENGTH))
    member_name: Mapped[str] = mapped_column(sa.String(200))
    member_email: Mapped[str] = mapped_column(sa.String(320))
    site_name: Mapped[str] = mapped_column(sa.String(200))
    document: Mapped[str] = mapped_column(sa.Text)
    """Canonical JSON (`Invoice.to_json()`): byte-identical whenever it is computed again."""
    usage: Mapped[str] = mapped_column(sa.Text)
    """The usage behind the lines as it stood at issue, canonical JSON: per local day its
    billable minutes, first presence and sessions (`billing.usage_json`)."""
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())


class InvoiceLineRow(Base):
    """One line of an issued invoice, for queries and adjustments (`invoicing.Billed`); the
    days and sessions behind it are in the invoice's document."""

    __tablename__ = "invoice_lines"
    __table_args__ = (sa.UniqueConstraint("invoice_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    invoice_id: Mapped[int] = mapped_column(sa.ForeignKey("invoices.id", ondelete="RESTRICT"))
    position: Mapped[int]
    key: Mapped[str] = mapped_column(sa.String(200))
    period: Mapped[str] = mapped_column(sa.String(PERIOD_LENGTH))
    """The period the line charges: earlier than the invoice's for an adjustment."""
    description: Mapped[str] = mapped_column(sa.Text)
    quantity: Mapped[str] = mapped_column(sa.String(MONEY_LENGTH))
    unit: Mapped[str] = mapped_column(sa.String(32))
    unit_price: Mapped[str] = mapped_column(sa.String(MONEY_LENGTH))
    per: Mapped[int]
    net: Mapped[str] = mapped_column(sa.String(MONEY_LENGTH))
    tax_rate: Mapped[str] = mapped_column(sa.String(16))
    version: Mapped[str] = mapped_column(sa.String(100))
    adjustment: Mapped[bool]


# --- people who sign in --------------------------------------------------------------------


class PersonRow(Base):
    """Someone who signs in with an e-mail and a password (or a one-time link).

    A person has the scope of an API key of the same role (`ruche.server.api.policy`):
    an admin everything, a manager one site, a member its registry member's own data.
    Only the argon2 hash of the password is kept; None until one is set (a member may
    sign in by link first).
    """

    __tablename__ = "people"
    __table_args__ = (
        sa.CheckConstraint(
            "(role = 'manager') = (site_id IS NOT NULL)"
            " AND (role = 'member') = (member_id IS NOT NULL)",
            name="scope",
        ),
        sa.CheckConstraint("locale IN ('fr', 'en')", name="locale"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    """Lower-cased, so that one address is one account however it is typed."""
    password_hash: Mapped[str | None] = mapped_column(sa.String(200))
    role: Mapped[Role] = mapped_column(_enum(Role, "role"))
    site_id: Mapped[int | None] = mapped_column(sa.ForeignKey("sites.id", ondelete="RESTRICT"))
    member_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("members.id", ondelete="RESTRICT"), unique=True
    )
    locale: Mapped[str] = mapped_column(sa.String(2), default="fr")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    password_changed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SignInSessionRow(Base):
    """A signed-in browser: the cookie carries a random id, only its SHA-256 is kept.

    It belongs to a person, or to an API key that logged in to the live floor page; it
    ends at `expires_at` or when revoked (sign-out, a new password, the key revoked).
    """

    __tablename__ = "signin_sessions"
    __table_args__ = (
        sa.CheckConstraint("(person_id IS NULL) != (api_key_id IS NULL)", name="holder"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    hash: Mapped[str] = mapped_column(sa.String(HASH_LENGTH), unique=True)
    person_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("people.id", ondelete="CASCADE"), index=True
    )
    api_key_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OneTimeTokenRow(Base):
    """A sign-in link or a password reset link: used once, before it expires; only the
    SHA-256 of the token in the link is kept."""

    __tablename__ = "one_time_tokens"
    __table_args__ = (sa.CheckConstraint("purpose IN ('signin', 'reset')", name="purpose"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    hash: Mapped[str] = mapped_column(sa.String(HASH_LENGTH), unique=True)
    person_id: Mapped[int] = mapped_column(
        sa.ForeignKey("people.id", ondelete="CASCADE"), index=True
    )
    purpose: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SignInAttemptRow(Base):
    """One counted sign-in attempt (a wrong password, a link asked for), per account and
    per client address: the sliding windows of `ruche.server.people.limits` count these.
    In SQL, not in memory, because several processes may serve the API."""

    __tablename__ = "signin_attempts"
    __table_args__ = (sa.Index(None, "scope", "subject", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(16))
    """`account` (subject: the e-mail typed) or `address` (subject: the client's IP)."""
    subject: Mapped[str] = mapped_column(sa.String(320))
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


class ServerSecretRow(Base):
    """A secret every process of one server shares, made at first use: the key that
    signs session and CSRF cookies."""

    __tablename__ = "server_secrets"

    name: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(sa.LargeBinary(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


# --- what the pages record: enrolments by tap, guests, desk check-ins, alarm acks --------


class BadgeEnrolmentRow(Base):
    """ "The next unknown badge tapped at this door belongs to this member": open until a
    tap fills `badge_id` or `expires_at` passes."""

    __tablename__ = "badge_enrolments"
    __table_args__ = (sa.Index(None, "door_id", "expires_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    door_id: Mapped[int] = mapped_column(sa.ForeignKey("doors.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"))
    requested_by: Mapped[str] = mapped_column(sa.String(100))
    """Who asked (`Principal.actor`)."""
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    badge_id: Mapped[int | None] = mapped_column(sa.ForeignKey("badges.id", ondelete="SET NULL"))
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class GuestInvitationRow(Base):
    """A guest (a member row of their own) let in for one local day at a site, until
    `valid_until` (the site's closing time that day)."""

    __tablename__ = "guest_invitations"
    __table_args__ = (sa.Index(None, "site_id", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="RESTRICT"))
    guest_member_id: Mapped[int] = mapped_column(
        sa.ForeignKey("members.id", ondelete="RESTRICT"), index=True
    )
    host_member_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("members.id", ondelete="RESTRICT"), index=True
    )
    """The member who invited them; None when staff did."""
    invited_by: Mapped[str] = mapped_column(sa.String(100))
    day: Mapped[date]
    """A date in the site's timezone."""
    valid_until: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    cancelled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class DeskCheckInRow(Base):
    """A member said "I am at this desk" by scanning its QR code."""

    __tablename__ = "desk_checkins"
    __table_args__ = (sa.Index(None, "desk_id", "checked_in_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    desk_id: Mapped[int] = mapped_column(sa.ForeignKey("desks.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(
        sa.ForeignKey("members.id", ondelete="CASCADE"), index=True
    )
    booking_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("bookings.id", ondelete="SET NULL")
    )
    checked_in_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AlarmAckRow(Base):
    """Who acknowledged an alarm, and when. `alarm` names it: `audit:<id>` for a door
    alarm in the audit log, `agent:<site>/<agent>:<since>` for an agent gone offline."""

    __tablename__ = "alarm_acks"

    id: Mapped[int] = mapped_column(primary_key=True)
    alarm: Mapped[str] = mapped_column(sa.String(200), unique=True)
    site: Mapped[str] = mapped_column(sa.String(ID_LENGTH), index=True)
    acknowledged_by: Mapped[str] = mapped_column(sa.String(100))
    acknowledged_at: Mapped[datetime] = mapped_column(UTCDateTime())


class BookingLimitRow(Base):
    """How members may book at a site: how far ahead, how long, how many at once. A row
    with no plan is the site's rule; a row for a plan overrides it for that plan's
    members. None in a column: no limit of that kind."""

    __tablename__ = "booking_limits"
    __table_args__ = (
        sa.UniqueConstraint("site_id", "plan_id"),
        sa.CheckConstraint(
            "(days_ahead IS NULL OR days_ahead >= 0) AND (max_minutes IS NULL OR max_minutes > 0)"
            " AND (at_once IS NULL OR at_once > 0)",
            name="positive",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    site_id: Mapped[int] = mapped_column(sa.ForeignKey("sites.id", ondelete="CASCADE"))
    plan_id: Mapped[int | None] = mapped_column(sa.ForeignKey("plans.id", ondelete="CASCADE"))
    days_ahead: Mapped[int | None]
    """The latest a booking may start: this many days after today (0: today only)."""
    max_minutes: Mapped[int | None]
    """The longest one booking may last."""
    at_once: Mapped[int | None]
    """How many bookings a member may hold at once (booked, not yet ended)."""
