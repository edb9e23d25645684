"""Price plans, their versions in time, and billing periods: pure values.

A plan's prices live in `PriceVersion`s, each in force from its `valid_from` local date
until the next version's. A price change is a new version, never an edit, so a day is
always priced by the version that was in force on it, whenever the invoice is computed:
a price change never rewrites the past.

A month straddling a change is billed in `Segment`s, one per version in force during
it, each covering the days that version is in force. Per-day prices (pay-as-you-go
minutes, day passes, overage rates) are the day's version's. Monthly terms (a
subscription fee, its included days or hours, a pay-as-you-go monthly cap) are prorated
by the share of the month's calendar days the version is in force: 16 of 30 days of a
300.00 fee bill 160.00; an allowance is rounded half up to a whole day or minute. Days
before the first version are in no segment (a plan that starts mid-month bills from
its start).

    >>> v1 = PriceVersion("v1", date(2026, 1, 1), DayPass(Decimal(15)), Currency.of("EUR"),
    ...                   Decimal("0.2"))
    >>> v2 = PriceVersion("v2", date(2026, 11, 16), DayPass(Decimal(18)), Currency.of("EUR"),
    ...                   Decimal("0.2"))
    >>> [(s.version.id, len(s.days)) for s in segments([v2, v1], Period(2026, 11))]
    [('v1', 15), ('v2', 15)]
"""

from __future__ import annotations

import calendar
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TypeAlias

from ruche.server.billing.money import Currency, amount, tax_rate
from ruche.server.errors import Invalid

__all__ = [
    "AllowanceUnit",
    "DayPass",
    "MonthlyPlan",
    "PayAsYouGo",
    "Period",
    "PlanTerms",
    "PriceVersion",
    "Segment",
    "check_versions",
    "segments",
    "version_on",
]

_PERIOD = re.compile(r"^(\d{4})-(\d{2})$")
_ONE_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True, order=True)
class Period:
    """A billing period: one calendar month of the site's local dates, `2026-11`."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if isinstance(self.year, bool) or not isinstance(self.year, int):
            raise Invalid(f"a period's year is a whole number, not {self.year!r}")
        if isinstance(self.month, bool) or not isinstance(self.month, int):
            raise Invalid(f"a period's month is a whole number, not {self.month!r}")
        if not 1 <= self.year <= 9998 or not 1 <= self.month <= 12:
            raise Invalid(f"no such month {self.year}-{self.month}: write a period as YYYY-MM")

    @classmethod
    def parse(cls, text: str) -> Period:
        """`"2026-11"`."""
        match = _PERIOD.match(text)
        if match is None:
            raise Invalid(f"a period is written YYYY-MM, such as '2026-11', not {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, day: date) -> Period:
        """The period that holds local date `day`."""
        return cls(day.year, day.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, self.length)

    @property
    def length(self) -> int:
        """The number of calendar days: 28 to 31."""
        return calendar.monthrange(self.year, self.month)[1]

    @property
    def days(self) -> tuple[date, ...]:
        first = self.first_day
        return tuple(first + i * _ONE_DAY for i in range(self.length))

    def __contains__(self, day: object) -> bool:
        return isinstance(day, date) and (day.year, day.month) == (self.year, self.month)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


class AllowanceUnit(StrEnum):
    """What a monthly plan includes and charges overage by."""

    DAY = "day"
    HOUR = "hour"


@dataclass(frozen=True, slots=True)
class MonthlyPlan:
    """A monthly fee with `included` days (or hours) of use; each further one costs `overage`.

    A day is used when it holds at least one billable minute. Hours are counted by the
    minute: overage is charged per minute at `overage` per 60 minutes. The allowance is
    consumed in date order, so the overage falls on the month's last used days.
    """

    fee: Decimal
    included: Decimal
    unit: AllowanceUnit
    overage: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "fee", amount(self.fee, "a monthly fee"))
        object.__setattr__(self, "included", amount(self.included, "an allowance"))
        object.__setattr__(self, "overage", amount(self.overage, "an overage price"))
        if not isinstance(self.unit, AllowanceUnit):
            raise Invalid(f"a monthly plan includes days or hours, not {self.unit!r}")
        if self.unit is AllowanceUnit.DAY and self.included != self.included.to_integral_value():
            raise Invalid(f"included days are whole days, not {self.included}")

    @classmethod
    def days(cls, *, fee: Decimal, included: int, overage_per_day: Decimal) -> MonthlyPlan:
        return cls(fee, Decimal(included), AllowanceUnit.DAY, overage_per_day)

    @classmethod
    def hours(
        cls, *, fee: Decimal, included: Decimal | int, overage_per_hour: Decimal
    ) -> MonthlyPlan:
        return cls(fee, Decimal(included), AllowanceUnit.HOUR, overage_per_hour)


@dataclass(frozen=True, slots=True)
class PayAsYouGo:
    """Per minute, with a per-day minimum and cap, and an optional monthly cap.

    A used day costs its minutes at `per_minute`, but never less than `minimum_charge`
    nor more than `daily_cap`; a month never more than `monthly_cap` (prorated when a
    price change splits the month).
    """

    per_minute: Decimal
    minimum_charge: Decimal
    daily_cap: Decimal
    monthly_cap: Decimal | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "per_minute", amount(self.per_minute, "a price per minute"))
        object.__setattr__(self, "minimum_charge", amount(self.minimum_charge, "a minimum charge"))
        object.__setattr__(self, "daily_cap", amount(self.daily_cap, "a daily cap"))
        if self.minimum_charge > self.daily_cap:
            raise Invalid(
                f"the daily cap ({self.daily_cap}) must not be below "
                f"the minimum charge ({self.minimum_charge})"
            )
        if self.monthly_cap is not None:
            object.__setattr__(self, "monthly_cap", amount(self.monthly_cap, "a monthly cap"))


@dataclass(frozen=True, slots=True)
class DayPass:
    """A pass for each used local day, consumed at the member's first presence that day."""

    price: Decimal

    def __post_init__(self) -> None:
        object.__setattr__(self, "price", amount(self.price, "a day pass price"))


PlanTerms: TypeAlias = MonthlyPlan | PayAsYouGo | DayPass


@dataclass(frozen=True, slots=True)
class PriceVersion:
    """A plan's prices from local date `valid_from` until the next version's.

    `id` is stable and unique (it goes into invoice keys); the currency and tax rate are
    the site's at the time.
    """

    id: str
    valid_from: date
    terms: PlanTerms
    currency: Currency
    tax_rate: Decimal

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise Invalid(f"a price version needs a non-empty id, not {self.id!r}")
        if not isinstance(self.valid_from, date):
            raise Invalid(f"price version {self.id!r}: valid_from must be a date")
        if not isinstance(self.terms, MonthlyPlan | PayAsYouGo | DayPass):
            raise Invalid(f"price version {self.id!r}: unknown plan terms {self.terms!r}")
        if not isinstance(self.currency, Currency):
            raise Invalid(f"price version {self.id!r}: currency must be a Currency")
        object.__setattr__(self, "tax_rate", tax_rate(self.tax_rate))


@dataclass(frozen=True, slots=True)
class Segment:
    """The days of a period that one price version prices."""

    version: PriceVersion
    days: tuple[date, ...]
    period: Period

    @property
    def share(self) -> tuple[int, int]:
        """`(days in force, days in the month)`: how much of the monthly terms apply."""
        return len(self.days), self.period.length


def check_versions(versions: Iterable[PriceVersion]) -> list[PriceVersion]:
    """The versions sorted by `valid_from`, after checking they can price days unambiguously.

    Ids and start dates must be unique, and every version in one currency (the site's).
    """
    ordered = sorted(versions, key=lambda v: (v.valid_from, v.id))
    if not ordered:
        raise Invalid("no price versions: a plan needs at least one to bill anything")
    ids = [v.id for v in ordered]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise Invalid(f"price version ids must be unique: {', '.join(twice)} appear twice")
    for before, after in itertools.pairwise(ordered):
        if before.valid_from == after.valid_from:
            raise Invalid(
                f"price versions {before.id!r} and {after.id!r} both start on "
                f"{after.valid_from}: one version per day"
            )
    codes = sorted({v.currency.code for v in ordered})
    if len({v.currency for v in ordered}) != 1:
        raise Invalid(f"all price versions of a site bill in one currency, not {', '.join(codes)}")
    return ordered


def version_on(versions: Sequence[PriceVersion], day: date) -> PriceVersion | None:
    """The version in force on local date `day` (the latest to start by then), if any.

    `versions` as `check_versions` returns them.
    """
    chosen: PriceVersion | None = None
    for version in versions:
        if version.valid_from > day:
            break
        chosen = version
    return chosen


def segments(versions: Iterable[PriceVersion], period: Period) -> list[Segment]:
    """The period's days grouped by the version in force on them, in date order."""
    ordered = check_versions(versions)
    out: list[Segment] = []
    current: PriceVersion | None = None
    days: list[date] = []
    for day in period.days:
        version = version_on(ordered, day)
        if version is not current:
            if current is not None:
                out.append(Segment(current, tuple(days), period))
            current, days = version, []
        days.append(day)
    if current is not None:
        out.append(Segment(current, tuple(days), period))
    return out
