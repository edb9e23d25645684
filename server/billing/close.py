"""Billing's shell: price versions, usage and invoices in SQL around the pure core.

The pure modules (`money`, `pricing`, `usage`, `invoicing`) decide; this module loads
what they need from SQL and stores what they return, inside the caller's transaction:

```python
with transaction(sessions) as session:
    result = close_period(session, Period(2026, 11), site="lyon", now=datetime.now(UTC))
    for row in result.invoices:
        print(row.number, row.total, row.currency)
```

- **Prices.** A plan is priced per site (`price_versions`): each version holds pure
  plan terms as JSON (`terms_json`), the tax rate (the site's, unless given) and is in
  force from a local date; the currency is the site's and is fixed once the site has
  prices. A version may not start in or before a closed period: that would rewrite
  invoices already issued.
- **Usage.** A member's spans at a site are their door visits and the desk sessions
  attributed to them, as `refresh_site` last stored them. Suspect sessions go to the
  pure core flagged, so they are held back, not billed; open ones are held back too.
- **Closing.** `close_period` closes a period at a site once: it claims the
  `(site, period)` row and the site row's lock, then issues one invoice per member with
  a membership or usage there, each inserted under its deterministic key with ON
  CONFLICT DO NOTHING, in the same transaction. Closing again returns the invoices
  already issued, unchanged. Periods close in order at a site, and only once ended.
- **Late events.** An issued invoice never changes. Each close settles the earlier
  closed periods (up to `SETTLE_MONTHS`) again from today's usage against what was
  billed (the `invoice_lines` rows): the differences are adjustment lines on the new
  invoice.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ruche.server.billing.invoicing import Billed, Invoice, compute_invoice
from ruche.server.billing.money import Currency, amount, decimal_text, tax_rate
from ruche.server.billing.pricing import (
    AllowanceUnit,
    DayPass,
    MonthlyPlan,
    PayAsYouGo,
    Period,
    PlanTerms,
    PriceVersion,
)
from ruche.server.billing.usage import PresenceSpan, Usage, billable_usage
from ruche.server.errors import Conflict, Invalid, NotFound
from ruche.server.registry.schedule import local_day
from ruche.server.storage.models import (
    BillingClose,
    DeskSessionRow,
    InvoiceLineRow,
    InvoiceRow,
    InvoiceStatus,
    Member,
    Membership,
    Plan,
    PriceVersionRow,
    Site,
    VisitRow,
    plan_sites,
)

__all__ = [
    "JOIN_GAP",
    "SETTLE_MONTHS",
    "CloseResult",
    "SiteClose",
    "Skipped",
    "add_price_version",
    "close_period",
    "closed_through",
    "document_of",
    "find_invoice",
    "list_invoices",
    "list_price_versions",
    "member_spans",
    "member_usage",
    "period_span",
    "price_versions",
    "set_site_billing",
    "sites_used",
    "terms_json",
    "terms_of",
    "usage_json",
    "usage_of",
]

JOIN_GAP = timedelta(minutes=15)
"""A gap between a member's spans shorter than this is billed as presence (a coffee break)."""
SETTLE_MONTHS = 12
"""How many closed months before the one closing are settled again for late events."""
MAX_LABEL = 100

# --- plan terms as JSON --------------------------------------------------------------------

_TERMS_FIELDS: dict[str, tuple[set[str], set[str]]] = {
    # kind: (required fields, optional fields)
    "monthly": ({"fee", "included", "unit", "overage"}, set()),
    "pay_as_you_go": ({"per_minute", "minimum_charge", "daily_cap"}, {"monthly_cap"}),
    "day_pass": ({"price"}, set()),
}


def terms_json(terms: PlanTerms) -> dict[str, Any]:
    """`terms` as stored and shown: a `kind` and decimal strings."""
    if isinstance(terms, MonthlyPlan):
        return {
            "kind": "monthly",
            "fee": decimal_text(terms.fee),
            "included": decimal_text(terms.included),
            "unit": terms.unit.value,
            "overage": decimal_text(terms.overage),
        }
    if isinstance(terms, PayAsYouGo):
        return {
            "kind": "pay_as_you_go",
            "per_minute": decimal_text(terms.per_minute),
            "minimum_charge": decimal_text(terms.minimum_charge),
            "daily_cap": decimal_text(terms.daily_cap),
            "monthly_cap": None if terms.monthly_cap is None else decimal_text(terms.monthly_cap),
        }
    return {"kind": "day_pass", "price": decimal_text(terms.price)}


def terms_of(value: Mapping[str, Any]) -> PlanTerms:
    """The pure plan terms a `terms_json` object describes; Invalid saying what is wrong."""
    if not isinstance(value, Mapping):
        raise Invalid(f"plan terms are a JSON object with a 'kind', not {value!r}")
    kind = value.get("kind")
    if kind not in _TERMS_FIELDS:
        raise Invalid(
            f"unknown plan terms kind {kind!r}: use one of {', '.join(sorted(_TERMS_FIELDS))}"
        )
    required, optional = _TERMS_FIELDS[kind]
    given = set(value) - {"kind"}
    if missing := sorted(required - given):
        raise Invalid(f"{kind} terms need {', '.join(missing)}")
    if extra := sorted(given - required - optional):
        raise Invalid(f"{kind} terms take no {', '.join(extra)}")

    def money(name: str) -> Decimal:
        return amount(value[name], f"{kind} terms' {name}")

    if kind == "monthly":
        unit = value["unit"]
        if unit not in {u.value for u in AllowanceUnit}:
            raise Invalid(f"a monthly plan includes 'day' or 'hour' units, not {unit!r}")
        return MonthlyPlan(money("fee"), money("included"), AllowanceUnit(unit), money("overage"))
    if kind == "pay_as_you_go":
        cap = value.get("monthly_cap")
        return PayAsYouGo(
            money("per_minute"),
            money("minimum_charge"),
            money("daily_cap"),
            None if cap is None else money("monthly_cap"),
        )
    return DayPass(money("price"))


# --- a site's money settings ---------------------------------------------------------------


def _lock_site(session: Session, site_id: int) -> Site:
    """The site row, locked until the transaction ends (PostgreSQL; SQLite locks it all).

    Closing a period and adding a price version both take it, so neither sees the
    other half done.
    """
    site = session.scalars(
        select(Site)
        .where(Site.id == site_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if site is None:
        raise NotFound("Site", site_id)
    return site


def closed_through(session: Session, site_id: int) -> Period | None:
    """The latest period closed at the site, if any."""
    latest = session.scalar(
        select(sa.func.max(BillingClose.period)).where(BillingClose.site_id == site_id)
    )
    return None if latest is None else Period.parse(latest)


def set_site_billing(
    session: Session, site_id: int, *, currency: str | None = None, rate: str | None = None
) -> Site:
    """Set the currency a site bills in and the tax rate its new price versions take.

    The currency is fixed once the site has price versions: amounts already set would
    change meaning.
    """
    site = _lock_site(session, site_id)
    if currency is not None and currency != site.currency:
        Currency.of(currency)
        priced = session.scalar(
            select(sa.func.count())
            .select_from(PriceVersionRow)
            .where(PriceVersionRow.site_id == site.id)
        )
        if priced:
            raise Conflict(
                f"site {site.slug} already has prices in {site.currency}: its currency is fixed "
                "once it has price versions"
            )
        site.currency = currency
    if rate is not None:
        site.tax_rate = decimal_text(tax_rate(rate))
    session.flush()
    return site


# --- price versions ------------------------------------------------------------------------


def _check_label(label: str) -> str:
    if not isinstance(label, str) or not label.strip() or len(label) > MAX_LABEL:
        raise Invalid(f"a price version's label is 1 to {MAX_LABEL} characters, not {label!r}")
    if any(ord(c) < 32 or ord(c) == 127 for c in label):
        raise Invalid("a price version's label holds no control characters")
    return label


def add_price_version(
    session: Session,
    *,
    site_id: int,
    plan_id: int,
    valid_from: date,
    terms: Mapping[str, Any],
    rate: str | None = None,
    label: str | None = None,
    now: datetime,
) -> PriceVersionRow:
    """A new price version of `plan_id` at the site, in force from local date `valid_from`.

    The plan must cover the site; the version must start after the site's closed periods
    (Conflict otherwise) and on a day no other version of the plan there starts.
    """
    site = _lock_site(session, site_id)
    plan = session.get(Plan, plan_id)
    if plan is None:
        raise NotFound("Plan", plan_id)
    if site.id not in {s.id for s in plan.sites}:
        raise Invalid(f"plan {plan.name!r} does not cover site {site.slug}: add the site first")
    parsed = terms_of(terms)
    version_rate = tax_rate(site.tax_rate if rate is None else rate)
    label = _check_label(label if label is not None else f"{plan.name} from {valid_from}")
    closed = closed_through(session, site.id)
    if closed is not None and valid_from <= closed.last_day:
        raise Conflict(
            f"{site.slug} is closed through {closed}: a price version starting on {valid_from} "
            f"would rewrite issued invoices; start it on {closed.last_day + timedelta(days=1)} "
            "or later"
        )
    clash = session.scalars(
        select(PriceVersionRow)
        .where(PriceVersionRow.plan_id == plan.id, PriceVersionRow.site_id == site.id)
        .where(sa.or_(PriceVersionRow.valid_from == valid_from, PriceVersionRow.label == label))
    ).first()
    if clash is not None:
        raise Conflict(
            f"plan {plan.name!r} already has a version at {site.slug} "
            f"({clash.label!r}, from {clash.valid_from}): one version per day and label"
        )
    row = PriceVersionRow(
        plan_id=plan.id,
        site_id=site.id,
        label=label,
        valid_from=valid_from,
        terms=terms_json(parsed),
        tax_rate=decimal_text(version_rate),
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def list_price_versions(
    session: Session, site_id: int, *, plan_id: int | None = None
) -> list[PriceVersionRow]:
    query = select(PriceVersionRow).where(PriceVersionRow.site_id == site_id)
    if plan_id is not None:
        query = query.where(PriceVersionRow.plan_id == plan_id)
    return list(
        session.scalars(
            query.order_by(PriceVersionRow.plan_id, PriceVersionRow.valid_from, PriceVersionRow.id)
        )
    )


def price_versions(session: Session, site: Site, plan_id: int) -> list[PriceVersion]:
    """The plan's versions at the site as the pure core's values."""
    currency = Currency.of(site.currency)
    return [
        PriceVersion(
            row.label, row.valid_from, terms_of(row.terms), currency, Decimal(row.tax_rate)
        )
        for row in list_price_versions(session, site.id, plan_id=plan_id)
    ]


# --- usage ---------------------------------------------------------------------------------


def period_span(site: Site, first: date, last: date) -> tuple[datetime, datetime]:
    """Local dates `first..last` at the site as UTC instants `[start, end)`."""
    return local_day(first, site.tzinfo)[0], local_day(last, site.tzinfo)[1]


def member_spans(
    session: Session, site: Site, member_id: int, start: datetime, end: datetime
) -> list[PresenceSpan]:
    """The member's visits and attributed desk sessions at the site touching `[start, end)`.

    Suspect sessions come flagged (held back by the core); open ones with no end.
    """
    visits = session.scalars(
        select(VisitRow)
        .where(VisitRow.site == site.slug, VisitRow.member_id == member_id)
        .where(VisitRow.start < end)
        .where(sa.or_(VisitRow.end.is_(None), VisitRow.end > start))
    )
    desks = session.scalars(
        select(DeskSessionRow)
        .where(DeskSessionRow.site == site.slug, DeskSessionRow.member_id == member_id)
        .where(DeskSessionRow.start < end)
        .where(sa.or_(DeskSessionRow.end.is_(None), DeskSessionRow.end > start))
    )
    # The ids are the pure core's (`PresenceSpan.of_visit`, `of_session`): stable keys of
    # rows that are recomputed whole.
    spans = [
        PresenceSpan(f"visit:{v.site}/{v.entry_agent}#{v.entry_seq}", v.start, v.end)
        for v in visits
    ]
    spans.extend(
        PresenceSpan(
            f"desk:{d.site}/{d.agent}/{d.desk}#{d.opened_seq}",
            d.start,
            d.end,
            suspect=d.suspect,
            reason=d.reason,
        )
        for d in desks
    )
    return spans


def member_usage(
    session: Session, site: Site, member_id: int, first_day: date, last_day: date
) -> Usage:
    """The member's billable usage at the site over local days `first_day..last_day`."""
    start, end = period_span(site, first_day, last_day)
    spans = member_spans(session, site, member_id, start - JOIN_GAP, end + JOIN_GAP)
    return billable_usage(
        spans, tz=site.tzinfo, join_gap=JOIN_GAP, first_day=first_day, last_day=last_day
    )


# --- closing a period ----------------------------------------------------------------------


@dataclass(frozen=True)
class Skipped:
    """A member with usage at a site that no invoice bills, and why."""

    site: str
    member_id: int
    reason: str


@dataclass(frozen=True)
class SiteClose:
    """One site's close of a period: the invoices it holds, issued now or before."""

    site_id: int
    site: str
    period: Period
    closed_at: datetime
    issued_now: bool
    """False when the period was already closed: the invoices are the stored ones."""
    invoices: list[InvoiceRow]


@dataclass(frozen=True)
class CloseResult:
    period: Period
    sites: list[SiteClose]
    skipped: list[Skipped] = field(default_factory=list)

    @property
    def invoices(self) -> list[InvoiceRow]:
        return [row for one in self.sites for row in one.invoices]


def close_period(
    session: Session, period: Period, *, site: str | None = None, now: datetime
) -> CloseResult:
    """Close `period` at `site` (every site when None): issue its invoices, once.

    Refused (Invalid) before the period has ended in the site's timezone, and (Conflict)
    out of order: after a site's first close, each period closes after the one before.
    """
    if site is None:
        site_ids = list(session.scalars(select(Site.id).order_by(Site.id)))
    else:
        found = session.scalar(select(Site.id).where(Site.slug == site))
        if found is None:
            raise NotFound("Site", site)
        site_ids = [found]
    closes: list[SiteClose] = []
    skipped: list[Skipped] = []
    for site_id in site_ids:  # in id order: two closes of every site never deadlock
        one, left_out = _close_site(session, _lock_site(session, site_id), period, now)
        closes.append(one)
        skipped.extend(left_out)
    return CloseResult(period, closes, skipped)


def _close_site(
    session: Session, site: Site, period: Period, now: datetime
) -> tuple[SiteClose, list[Skipped]]:
    ends = local_day(period.last_day, site.tzinfo)[1]
    if now < ends:
        raise Invalid(
            f"{period} has not ended at {site.slug} yet: it can be closed from "
            f"{ends.astimezone(site.tzinfo).isoformat()} ({site.timezone})"
        )
    existing = session.get(BillingClose, (site.id, str(period)))
    skipped: list[Skipped] = []
    issued_now = False
    if existing is None:
        _check_order(session, site, period)
        claim = _insert_ignoring(session, BillingClose, ["site_id", "period"]).values(
            site_id=site.id, period=str(period), closed_at=now
        )
        if session.execute(claim.returning(BillingClose.site_id)).scalar_one_or_none():
            skipped = _issue(session, site, period, now)
            issued_now = True
        existing = session.get(BillingClose, (site.id, str(period)), populate_existing=True)
        assert existing is not None  # noqa: S101 - claimed now or by another close
    invoices = _invoices_of(session, site.id, period)
    return SiteClose(site.id, site.slug, period, existing.closed_at, issued_now, invoices), skipped


def _check_order(session: Session, site: Site, period: Period) -> None:
    latest = closed_through(session, site.id)
    if latest is None:
        return
    if period < latest:
        raise Conflict(
            f"{site.slug} is closed through {latest} and {period} was never closed there: "
            "billing at a site starts with its first closed period"
        )
    expected = _next(latest)
    if period != expected:
        raise Conflict(
            f"close {expected} at {site.slug} first: periods close in order "
            f"({site.slug} is closed through {latest})"
        )


def _next(period: Period) -> Period:
    return Period(period.year + period.month // 12, period.month % 12 + 1)


def _months_before(period: Period, months: int) -> Period:
    index = period.year * 12 + period.month - 1 - months
    return Period(index // 12, index % 12 + 1)


def _invoices_of(session: Session, site_id: int, period: Period) -> list[InvoiceRow]:
    return list(
        session.scalars(
            select(InvoiceRow)
            .where(InvoiceRow.site_id == site_id, InvoiceRow.period == str(period))
            .order_by(InvoiceRow.number)
        )
    )


@dataclass(frozen=True)
class _Billable:
    """A member to invoice at a site for a period: their plan, from when it runs."""

    member: Member
    plan: Plan | None
    since: datetime | None
    """When the member's unbroken membership on `plan` began."""
    used: bool


def _billables(session: Session, site: Site, start: datetime, end: datetime) -> list[_Billable]:
    """Members with a membership on a plan covering the site, or usage there, in `[start, end)`."""
    memberships = list(
        session.scalars(
            select(Membership)
            .join(plan_sites, plan_sites.c.plan_id == Membership.plan_id)
            .where(plan_sites.c.site_id == site.id)
            .order_by(Membership.member_id, Membership.starts_at, Membership.id)
        )
    )
    users = set(
        session.scalars(
            select(VisitRow.member_id)
            .where(VisitRow.site == site.slug, VisitRow.start < end)
            .where(sa.or_(VisitRow.end.is_(None), VisitRow.end > start))
        )
    )
    users |= {
        member_id
        for member_id in session.scalars(
            select(DeskSessionRow.member_id)
            .where(DeskSessionRow.site == site.slug, DeskSessionRow.start < end)
            .where(sa.or_(DeskSessionRow.end.is_(None), DeskSessionRow.end > start))
        )
        if member_id is not None
    }
    by_member: dict[int, list[Membership]] = {}
    for m in memberships:
        by_member.setdefault(m.member_id, []).append(m)
    members = set(users) | {
        m.member_id
        for m in memberships
        if m.starts_at < end and (m.ends_at is None or m.ends_at > start)
    }
    out: list[_Billable] = []
    for member_id in sorted(members):
        member = session.get(Member, member_id)
        if member is None:  # usage rows name members by id, without a foreign key
            continue
        held = by_member.get(member_id, [])
        current = [
            m for m in held if m.starts_at < end and (m.ends_at is None or m.ends_at > start)
        ]
        if not current:
            out.append(_Billable(member, None, None, member_id in users))
            continue
        # One plan a period (plan changes mid-month are not billed apart yet): the latest.
        chosen = current[-1]
        since = chosen.starts_at
        for earlier in reversed(held):
            if (
                earlier.plan_id == chosen.plan_id
                and earlier.starts_at < since
                and (earlier.ends_at is None or earlier.ends_at >= since)
            ):
                since = earlier.starts_at
        plan = session.get(Plan, chosen.plan_id)
        out.append(_Billable(member, plan, since, member_id in users))
    return out


def _issue(session: Session, site: Site, period: Period, now: datetime) -> list[Skipped]:
    """Compute and store the invoices of a period just claimed at the site."""
    start, end = period_span(site, period.first_day, period.last_day)
    first_closed = session.scalar(
        select(sa.func.min(BillingClose.period)).where(BillingClose.site_id == site.id)
    )
    site_from = Period.parse(first_closed or str(period)).first_day
    oldest = _months_before(period, SETTLE_MONTHS).first_day
    skipped: list[Skipped] = []
    number = 0
    for billable in _billables(session, site, start, end):
        member = billable.member
        if billable.plan is None:
            if billable.used:
                skipped.append(Skipped(site.slug, member.id, f"no membership at {site.slug}"))
            continue
        versions = price_versions(session, site, billable.plan.id)
        if not versions:
            if billable.used:
                skipped.append(
                    Skipped(
                        site.slug,
                        member.id,
                        f"plan {billable.plan.name!r} has no price versions at {site.slug}",
                    )
                )
            continue
        assert billable.since is not None  # noqa: S101 - set with the plan
        joined = Period.of(billable.since.astimezone(site.tzinfo).date()).first_day
        # Settle back to the site's first close, the member's start on this plan (another
        # plan's months are not repriced with this one's), the plan's first price here and
        # SETTLE_MONTHS, whichever is latest; the period itself always.
        first_day = min(
            period.first_day,
            max(site_from, joined, min(v.valid_from for v in versions), oldest),
        )
        usage = member_usage(session, site, member.id, first_day, period.last_day)
        try:
            invoice = compute_invoice(
                member=member.id,
                site=site.slug,
                period=period,
                usage=usage,
                versions=versions,
                billed=_billed(session, site.id, member.id),
            )
        except Invalid as exc:
            raise Invalid(f"member {member.id} ({member.email}) at {site.slug}: {exc}") from exc
        number += 1
        _store(
            session,
            site,
            member,
            invoice,
            usage,
            number=f"{site.slug}-{period}-{number:04d}",
            now=now,
        )
    session.flush()
    return skipped


def _billed(session: Session, site_id: int, member_id: int) -> list[Billed]:
    """What the member's issued invoices at the site billed, line by line."""
    rows = session.execute(
        select(InvoiceRow.period, InvoiceLineRow)
        .join(InvoiceLineRow, InvoiceLineRow.invoice_id == InvoiceRow.id)
        .where(InvoiceRow.site_id == site_id, InvoiceRow.member_id == member_id)
    ).all()
    return [
        Billed(
            Period.parse(invoice_period),
            Period.parse(line.period),
            line.key,
            Decimal(line.net),
            Decimal(line.tax_rate),
            line.version,
        )
        for invoice_period, line in rows
    ]


def usage_json(invoice: Invoice, usage: Usage) -> str:
    """Canonical JSON of the usage days behind the invoice's lines, as they stand now."""
    days = {day for line in invoice.lines for day in line.days}
    return json.dumps(
        [
            {
                "day": d.day.isoformat(),
                "first_presence": d.first_presence.isoformat(),
                "minutes": d.minutes,
                "sessions": list(d.spans),
            }
            for d in usage.days
            if d.day in days
        ],
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )


def _insert_ignoring(
    session: Session, model: type[Any], keys: Sequence[str]
) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that does nothing when a row with the same `keys` exists (the claim)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model).on_conflict_do_nothing(index_elements=list(keys))
    return sqlite.insert(model).on_conflict_do_nothing(index_elements=list(keys))


def _store(
    session: Session,
    site: Site,
    member: Member,
    invoice: Invoice,
    usage: Usage,
    *,
    number: str,
    now: datetime,
) -> None:
    money = invoice.currency.format
    inserted = session.execute(
        _insert_ignoring(session, InvoiceRow, ["key"])
        .values(
            key=invoice.key,
            number=number,
            member_id=member.id,
            site_id=site.id,
            period=str(invoice.period),
            status=InvoiceStatus.ISSUED,
            currency=invoice.currency.code,
            subtotal=money(invoice.subtotal),
            tax=money(invoice.tax),
            total=money(invoice.total),
            member_name=member.name,
            member_email=member.email,
            site_name=site.name,
            document=invoice.to_json(),
            usage=usage_json(invoice, usage),
            issued_at=now,
        )
        .returning(InvoiceRow.id)
    ).scalar_one_or_none()
    if inserted is None or not invoice.lines:  # issued already, under this key: unchanged
        return
    session.execute(
        sa.insert(InvoiceLineRow),
        [
            {
                "invoice_id": inserted,
                "position": position,
                "key": line.key,
                "period": str(line.period),
                "description": line.description,
                "quantity": decimal_text(line.quantity),
                "unit": line.unit,
                "unit_price": decimal_text(line.unit_price),
                "per": line.per,
                "net": money(line.net),
                "tax_rate": decimal_text(line.tax_rate),
                "version": line.version,
                "adjustment": line.adjustment,
            }
            for position, line in enumerate(invoice.lines)
        ],
    )


# --- reading invoices ----------------------------------------------------------------------


def list_invoices(
    session: Session,
    *,
    site_id: int | None = None,
    period: Period | None = None,
    member_id: int | None = None,
) -> list[InvoiceRow]:
    """Issued invoices, by period, site and number."""
    query = select(InvoiceRow)
    if site_id is not None:
        query = query.where(InvoiceRow.site_id == site_id)
    if period is not None:
        query = query.where(InvoiceRow.period == str(period))
    if member_id is not None:
        query = query.where(InvoiceRow.member_id == member_id)
    return list(
        session.scalars(query.order_by(InvoiceRow.period, InvoiceRow.site_id, InvoiceRow.number))
    )


def find_invoice(session: Session, key_or_number: str) -> InvoiceRow:
    """The invoice with this key (or number), else NotFound."""
    row = session.scalars(
        select(InvoiceRow).where(
            sa.or_(InvoiceRow.key == key_or_number, InvoiceRow.number == key_or_number)
        )
    ).first()
    if row is None:
        raise NotFound("Invoice", key_or_number)
    return row


def document_of(row: InvoiceRow) -> dict[str, Any]:
    """The stored canonical invoice as JSON values (`Invoice.canonical()`)."""
    value: dict[str, Any] = json.loads(row.document)
    return value


def usage_of(row: InvoiceRow) -> list[dict[str, Any]]:
    """The usage behind an issued invoice's lines, as stored at issue (`usage_json`)."""
    value: list[dict[str, Any]] = json.loads(row.usage)
    return value


def sites_used(session: Session, member_id: int, period: Period) -> list[Site]:
    """The sites where the member has visits or desk sessions around `period`.

    A day's margin on each side covers every timezone; `member_usage` then cuts at the
    site's own midnights.
    """
    start = datetime.combine(period.first_day - timedelta(days=1), time(), UTC)
    end = datetime.combine(period.last_day + timedelta(days=2), time(), UTC)
    slugs: set[str] = set()
    for model in (VisitRow, DeskSessionRow):
        slugs |= set(
            session.scalars(
                select(model.site)
                .where(model.member_id == member_id, model.start < end)
                .where(sa.or_(model.end.is_(None), model.end > start))
            )
        )
    if not slugs:
        return []
    return list(session.scalars(select(Site).where(Site.slug.in_(slugs)).order_by(Site.id)))
