"""The enumerations rows store and the rules speak: one per concept, so a badge's status
or an audit row's kind means the same thing in SQL, in the pure rules and in the API."""

from __future__ import annotations

from enum import StrEnum


class BadgeStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"  # temporarily: lost and maybe found, unpaid
    REVOKED = "revoked"  # for good: never active again


class BookingStatus(StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"
    RELEASED = "released"  # freed early, by the member or because the space was left
    NO_SHOW = "no_show"  # released by the server: no presence by start + no-show minutes


class Role(StrEnum):
    ADMIN = "admin"  # everything
    MANAGER = "manager"  # one site's operations and reports
    MEMBER = "member"  # own bookings, own usage, own log


class AuditKind(StrEnum):
    DECISION = "decision"  # a door tap, allowed or denied
    REMOTE_UNLOCK = "remote_unlock"
    ALARM = "alarm"  # forced or held open
    LOCKDOWN = "lockdown"
    ALARM_ACK = "alarm_ack"  # a person acknowledged an alarm (`reason`: which one)


class AuditSource(StrEnum):
    ONLINE = "online"  # decided by the server as it happened
    OFFLINE = "offline"  # decided by the agent from its cached allow-list, reported later
    AGENT = "agent"  # reported by an agent (alarms)
    API = "api"  # asked through the REST API or the CLI (remote unlock, lockdown)


class InvoiceStatus(StrEnum):
    ISSUED = "issued"  # final: an issued invoice never changes; corrections come as adjustments
