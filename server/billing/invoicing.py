"""A member's invoice for one month at one site, computed purely from usage and prices.

`compute_invoice` takes the member's `Usage` (from `ruche.server.billing.usage`), the site's
`PriceVersion`s and what earlier invoices billed (`Billed`), and returns an `Invoice`
whose `to_json()` is canonical: the same inputs give the same bytes, whatever their
order. It stores nothing: the shell persists what it returns.

## Lines

Each version in force during the month bills the days it is in force (see
`ruche.server.billing.pricing`):

- monthly: the fee (key `fee:{version}`), the included use at 0 (`included:{version}`),
  the overage (`overage:{version}`);
- pay-as-you-go: one line per used day (`payg:{version}:{day}`) for its minutes, or the
  minimum charge, or the daily cap; then the monthly cap as a credit (`cap:{version}`);
- day pass: one line per used day (`pass:{version}:{day}`).

Every line says `quantity` `unit` at `unit_price` per `per` units, and its `net` is
`charge(quantity, unit_price, per)`: computed exactly and rounded once, half away from
zero to the currency's minor unit (`ruche.server.billing.money`). A line names the local days and
the sessions (presence span ids) behind it.

## Totals and tax

`subtotal` is the sum of the line nets. Tax is computed per invoice, once per tax rate:
`round(sum of the nets at that rate x rate)`, listed in `taxes`; `total` is `subtotal`
plus the taxes. Sums of rounded amounts are exact, so the lines add up to the total to
the cent. A month holds two rates only when a price version changed the rate; an
adjustment keeps the rate of the period it corrects.

## Adjustments

An issued invoice never changes. Each earlier month the usage covers completely (and
that the shell therefore means to settle) is priced again from today's usage, with
the versions that were in force then, and compared key by key with what invoices
before this one billed for it (`billed`, original lines and earlier adjustments alike):
each difference becomes an adjustment line (`quantity` 1, `unit` `adjustment`,
positive or negative) for that month. Once billed, the difference is zero, so late
events are settled exactly once. Billed figures of this period's own invoice, or of
later ones, are ignored: closing a month again with the same inputs reproduces it.

## Key

`key` is the SHA-256 (hex) of the canonical JSON of the member, the site, the period
and the ids of the versions in force during it: one invoice per member, site and
period. The shell stores an invoice under its key and never replaces one, so closing
twice issues nothing new. (A version must therefore never be added with a
`valid_from` inside a closed period: that would rewrite the past, and change the key.)
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from fractions import Fraction
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ruche.server.billing.money import Currency, charge, decimal_text, round_half_up, round_money
from ruche.server.billing.pricing import (
    AllowanceUnit,
    DayPass,
    MonthlyPlan,
    PayAsYouGo,
    Period,
    PriceVersion,
    Segment,
    check_versions,
    segments,
)
from ruche.server.billing.usage import DayUsage, HeldBack, Usage
from ruche.server.errors import Invalid

__all__ = [
    "Billed",
    "Invoice",
    "Line",
    "TaxLine",
    "compute_invoice",
    "invoice_key",
]

_ZERO = Decimal(0)
_MINUTES_PER_HOUR = 60


@dataclass(frozen=True, slots=True)
class Line:
    """One invoice line: `quantity` `unit` at `unit_price` per `per` units, `net` rounded once."""

    key: str
    """Stable within `period`: what adjustments compare."""
    period: Period
    """The month charged: earlier than the invoice's for an adjustment."""
    description: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    per: int
    net: Decimal
    tax_rate: Decimal
    version: str
    days: tuple[date, ...]
    sessions: tuple[str, ...]
    adjustment: bool = False

    def canonical(self, currency: Currency) -> dict[str, object]:
        return {
            "adjustment": self.adjustment,
            "days": [d.isoformat() for d in self.days],
            "description": self.description,
            "key": self.key,
            "net": currency.format(self.net),
            "per": self.per,
            "period": str(self.period),
            "quantity": decimal_text(self.quantity),
            "sessions": list(self.sessions),
            "tax_rate": decimal_text(self.tax_rate),
            "unit": self.unit,
            "unit_price": decimal_text(self.unit_price),
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class TaxLine:
    """The tax at one rate: `round(base x rate)`."""

    rate: Decimal
    base: Decimal
    tax: Decimal


@dataclass(frozen=True, slots=True)
class Billed:
    """What an issued invoice billed under one key: the shell stores one per line."""

    invoice_period: Period
    """The period of the invoice the line is on."""
    period: Period
    """The period the line charges (its own, or an earlier one for an adjustment)."""
    key: str
    net: Decimal
    tax_rate: Decimal
    version: str


@dataclass(frozen=True, slots=True)
class Invoice:
    """One member's invoice for one period at one site."""

    member: int
    site: str
    period: Period
    currency: Currency
    timezone: str
    key: str
    versions: tuple[str, ...]
    """The ids of the price versions in force during the period, in date order."""
    lines: tuple[Line, ...]
    subtotal: Decimal
    taxes: tuple[TaxLine, ...]
    tax: Decimal
    total: Decimal
    held_back: tuple[HeldBack, ...]
    """Spans up to the period's end not billed yet (suspect ones await review)."""

    def canonical(self) -> dict[str, object]:
        """The invoice as plain JSON values: amounts as fixed-point strings."""
        money = self.currency.format
        return {
            "currency": self.currency.code,
            "held_back": [
                {"days": [d.isoformat() for d in h.days], "id": h.id, "reason": h.reason}
                for h in self.held_back
            ],
            "key": self.key,
            "lines": [line.canonical(self.currency) for line in self.lines],
            "member": self.member,
            "period": str(self.period),
            "site": self.site,
            "subtotal": money(self.subtotal),
            "tax": money(self.tax),
            "taxes": [
                {"base": money(t.base), "rate": decimal_text(t.rate), "tax": money(t.tax)}
                for t in self.taxes
            ],
            "timezone": self.timezone,
            "total": money(self.total),
            "versions": list(self.versions),
        }

    def to_json(self) -> str:
        """Canonical JSON: sorted keys, no spaces, ASCII; byte-identical for equal invoices."""
        return _canonical_json(self.canonical())

    def billed(self) -> tuple[Billed, ...]:
        """What this invoice bills, for the adjustments of later invoices."""
        return tuple(
            Billed(self.period, line.period, line.key, line.net, line.tax_rate, line.version)
            for line in self.lines
        )


def invoice_key(member: int, site: str, period: Period, versions: Sequence[str]) -> str:
    """SHA-256 (hex) of the canonical JSON of member, site, period and version ids."""
    text = _canonical_json(
        {"member": member, "site": site, "period": str(period), "versions": list(versions)}
    )
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def compute_invoice(
    *,
    member: int,
    site: str,
    period: Period,
    usage: Usage,
    versions: Iterable[PriceVersion],
    billed: Iterable[Billed] = (),
) -> Invoice:
    """The invoice of `member` at `site` for `period`, by the rules in the module docstring.

    `usage` must cover the whole period, and every earlier period to settle; `billed`
    holds what issued invoices billed (`Invoice.billed()` of each).
    """
    if isinstance(member, bool) or not isinstance(member, int):
        raise Invalid(f"member must be a member id (int), not {member!r}")
    if not isinstance(site, str) or not site:
        raise Invalid(f"site must be a site id, not {site!r}")
    if not isinstance(period, Period):
        raise Invalid(f"period must be a Period such as Period(2026, 11), not {period!r}")
    if not isinstance(usage, Usage):
        raise Invalid(f"usage must be a Usage from billable_usage, not {usage!r}")
    if not usage.covers(period.first_day, period.last_day):
        raise Invalid(
            f"the usage covers {usage.first_day} to {usage.last_day}, not all of {period}: "
            "compute it over the whole period"
        )
    ordered = check_versions(versions)
    currency = ordered[0].currency
    try:
        tz = ZoneInfo(usage.timezone)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise Invalid(f"unknown timezone {usage.timezone!r} in the usage") from exc

    segs = segments(ordered, period)
    lines = _period_lines(period, segs, usage, tz)
    lines.extend(_adjustments(period, ordered, usage, tz, billed))

    rates: dict[Decimal, Decimal] = defaultdict(Decimal)
    for line in lines:
        rates[line.tax_rate] += line.net
    taxes = tuple(
        TaxLine(rate, base, round_money(Fraction(base) * Fraction(rate), currency))
        for rate, base in sorted(rates.items())
    )
    subtotal = sum((line.net for line in lines), _ZERO)
    tax = sum((t.tax for t in taxes), _ZERO)
    version_ids = tuple(s.version.id for s in segs)
    held = tuple(h for h in usage.held_back if min(h.days) <= period.last_day)
    return Invoice(
        member=member,
        site=site,
        period=period,
        currency=currency,
        timezone=usage.timezone,
        key=invoice_key(member, site, period, version_ids),
        versions=version_ids,
        lines=tuple(lines),
        subtotal=subtotal,
        taxes=taxes,
        tax=tax,
        total=subtotal + tax,
        held_back=held,
    )


# --- one period's charges ----------------------------------------------------------------


def _period_lines(period: Period, segs: list[Segment], usage: Usage, tz: ZoneInfo) -> list[Line]:
    """The lines of `period` from its usage, segment by segment."""
    by_day = {d.day: d for d in usage.between(period.first_day, period.last_day) if d.used}
    priced = {day for seg in segs for day in seg.days}
    unpriced = sorted(set(by_day) - priced)
    if unpriced:
        raise Invalid(
            f"no price version is in force on {unpriced[0]}, a day with billable use: "
            "add a version valid from that day or earlier"
        )
    lines: list[Line] = []
    for seg in segs:
        used = [by_day[day] for day in seg.days if day in by_day]
        terms = seg.version.terms
        if isinstance(terms, MonthlyPlan):
            lines.extend(_monthly(seg, terms, used))
        elif isinstance(terms, PayAsYouGo):
            lines.extend(_pay_as_you_go(seg, terms, used))
        else:
            lines.extend(_day_passes(seg, terms, used, tz))
    return lines


def _line(
    seg: Segment,
    key: str,
    description: str,
    priced: tuple[Decimal | int, str, Decimal],
    *,
    per: int = 1,
    days: Sequence[DayUsage] = (),
) -> Line:
    version = seg.version
    quantity, unit, unit_price = priced
    return Line(
        key=key,
        period=seg.period,
        description=description,
        quantity=Decimal(quantity),
        unit=unit,
        unit_price=unit_price,
        per=per,
        net=charge(quantity, unit_price, version.currency, per=per),
        tax_rate=version.tax_rate,
        version=version.id,
        days=tuple(d.day for d in days),
        sessions=tuple(sorted({s for d in days for s in d.spans})),
    )


def _monthly(seg: Segment, plan: MonthlyPlan, used: list[DayUsage]) -> list[Line]:
    vid = seg.version.id
    in_force, month = seg.share
    if in_force == month:
        lines = [_line(seg, f"fee:{vid}", f"Monthly fee ({vid})", (1, "month", plan.fee))]
    else:
        lines = [
            _line(
                seg,
                f"fee:{vid}",
                f"Monthly fee ({vid}), {in_force} of {month} days",
                (in_force, "day", plan.fee),
                per=month,
            )
        ]
    if plan.unit is AllowanceUnit.DAY:
        allowance = int(round_half_up(Fraction(plan.included) * in_force / month))
        included, over = used[:allowance], used[allowance:]
        if included:
            lines.append(
                _line(
                    seg,
                    f"included:{vid}",
                    f"Included days used ({vid}): {len(included)} of {allowance}",
                    (len(included), "day", _ZERO),
                    days=included,
                )
            )
        if over:
            lines.append(
                _line(
                    seg,
                    f"overage:{vid}",
                    f"Overage days ({vid}): {len(over)}",
                    (len(over), "day", plan.overage),
                    days=over,
                )
            )
        return lines

    allowance = int(round_half_up(Fraction(plan.included) * _MINUTES_PER_HOUR * in_force / month))
    left = allowance
    inside: list[DayUsage] = []
    beyond: list[DayUsage] = []
    inside_minutes = beyond_minutes = 0
    for day in used:  # the allowance is consumed in date order
        take = min(day.minutes, left)
        left -= take
        if take:
            inside.append(day)
            inside_minutes += take
        if day.minutes > take:
            beyond.append(day)
            beyond_minutes += day.minutes - take
    if inside:
        lines.append(
            _line(
                seg,
                f"included:{vid}",
                f"Included hours used ({vid}): {_hours(inside_minutes)} of {_hours(allowance)}",
                (inside_minutes, "minute", _ZERO),
                days=inside,
            )
        )
    if beyond:
        lines.append(
            _line(
                seg,
                f"overage:{vid}",
                f"Overage ({vid}): {_hours(beyond_minutes)}",
                (beyond_minutes, "minute", plan.overage),
                per=_MINUTES_PER_HOUR,
                days=beyond,
            )
        )
    return lines


def _pay_as_you_go(seg: Segment, plan: PayAsYouGo, used: list[DayUsage]) -> list[Line]:
    lines: list[Line] = []
    for day in used:
        exact = day.minutes * Fraction(plan.per_minute)
        key = f"payg:{seg.version.id}:{day.day.isoformat()}"
        if exact < Fraction(plan.minimum_charge):
            line = _line(
                seg,
                key,
                f"{day.day}: {day.minutes} min, minimum charge",
                (1, "day", plan.minimum_charge),
                days=[day],
            )
        elif exact > Fraction(plan.daily_cap):
            line = _line(
                seg,
                key,
                f"{day.day}: {day.minutes} min, daily cap",
                (1, "day", plan.daily_cap),
                days=[day],
            )
        else:
            line = _line(
                seg,
                key,
                f"{day.day}: {day.minutes} min",
                (day.minutes, "minute", plan.per_minute),
                days=[day],
            )
        lines.append(line)
    if plan.monthly_cap is not None and lines:
        in_force, month = seg.share
        cap = charge(in_force, plan.monthly_cap, seg.version.currency, per=month)
        spent = sum((line.net for line in lines), _ZERO)
        if spent > cap:
            lines.append(
                _line(
                    seg,
                    f"cap:{seg.version.id}",
                    f"Monthly cap ({seg.version.id}): {cap} reached",
                    (1, "month", cap - spent),
                    days=used,
                )
            )
    return lines


def _day_passes(seg: Segment, plan: DayPass, used: list[DayUsage], tz: ZoneInfo) -> list[Line]:
    return [
        _line(
            seg,
            f"pass:{seg.version.id}:{day.day.isoformat()}",
            f"Day pass {day.day}, first presence {day.first_presence.astimezone(tz):%H:%M}",
            (1, "day pass", plan.price),
            days=[day],
        )
        for day in used
    ]


def _hours(minutes: int) -> str:
    hours, rest = divmod(minutes, _MINUTES_PER_HOUR)
    return f"{hours} h {rest:02d} min" if rest else f"{hours} h"


# --- adjustments -------------------------------------------------------------------------


def _adjustments(
    period: Period,
    versions: list[PriceVersion],
    usage: Usage,
    tz: ZoneInfo,
    billed: Iterable[Billed],
) -> list[Line]:
    """Adjustment lines for earlier periods whose charges differ from what was billed."""
    before: dict[Period, dict[str, list[Billed]]] = defaultdict(lambda: defaultdict(list))
    for entry in billed:
        if not isinstance(entry, Billed):
            raise Invalid(f"billed figures are Billed values, not {entry!r}")
        if entry.period > entry.invoice_period:
            raise Invalid(
                f"a {entry.invoice_period} invoice cannot bill {entry.period} ({entry.key}): "
                "lines charge their own period or an earlier one"
            )
        if entry.invoice_period < period:
            before[entry.period][entry.key].append(entry)
    candidates = set(before) | {Period.of(d.day) for d in usage.days}
    settled = sorted(p for p in candidates if p < period and usage.covers(p.first_day, p.last_day))
    currency = versions[0].currency
    out: list[Line] = []
    for earlier in settled:
        now = {
            line.key: line
            for line in _period_lines(earlier, segments(versions, earlier), usage, tz)
        }
        was = before.get(earlier, {})
        for key in [*now, *sorted(set(was) - set(now))]:
            line = now.get(key)
            entries = was.get(key, [])
            old = sum((e.net for e in entries), _ZERO)
            new = line.net if line is not None else _ZERO
            delta = new - old
            if delta == 0:
                continue
            if line is None:
                rate, version = _billed_terms(key, entries)
            else:
                rate, version = line.tax_rate, line.version
            what = line.description if line is not None else key
            out.append(
                Line(
                    key=key,
                    period=earlier,
                    description=(
                        f"Adjustment for {earlier}: {what} "
                        f"(billed {currency.format(old)}, now {currency.format(new)})"
                    ),
                    quantity=Decimal(1),
                    unit="adjustment",
                    unit_price=delta,
                    per=1,
                    net=delta,
                    tax_rate=rate,
                    version=version,
                    days=line.days if line is not None else (),
                    sessions=line.sessions if line is not None else (),
                    adjustment=True,
                )
            )
    return out


def _billed_terms(key: str, entries: list[Billed]) -> tuple[Decimal, str]:
    """The tax rate and version a key was billed at: one of each."""
    terms = {(e.tax_rate, e.version) for e in entries}
    if len(terms) != 1:
        raise Invalid(f"{key} was billed under several tax rates or versions: {sorted(terms)}")
    return terms.pop()


def _canonical_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
