"""Closing a month: the invoices of a period at a site, issued once, in SQL around the
pure core.

The pure modules (`money`, `pricing`, `usage`, `invoicing`) decide; this module loads
what they need from SQL (prices from `prices`, a member's time from `spans`) and stores
what they return, inside the caller's transaction:

```python
with transaction(sessions) as session:
    result = close_period(session, Period(2026, 11), site="lyon", now=datetime.now(UTC))
    for row in result.invoices:
        print(row.number, row.total, row.currency)
```

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ruche.server.billing.invoicing import Billed, Invoice, compute_invoice
from ruche.server.billing.money import decimal_text
from ruche.server.billing.prices import closed_through, lock_site, price_versions
from ruche.server.billing.pricing import (
    Period,
    PriceVersion,
)
from ruche.server.billing.spans import member_usage, period_span
from ruche.server.billing.usage import Usage
from ruche.server.errors import Conflict, Invalid, NotFound
from ruche.server.registry.schedule import local_day
from ruche.server.storage.enums import InvoiceStatus
from ruche.server.storage.models import (
    BillingCloseRow,
    DeskSessionRow,
    InvoiceLineRow,
    InvoiceRow,
    MemberRow,
    MembershipRow,
    PlanRow,
    SiteRow,
    VisitRow,
    plan_sites,
)

SETTLE_MONTHS = 12
"""How many closed months before the one closing are settled again for late events."""


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
        site_ids = list(session.scalars(select(SiteRow.id).order_by(SiteRow.id)))
    else:
        found = session.scalar(select(SiteRow.id).where(SiteRow.slug == site))
        if found is None:
            raise NotFound("Site", site)
        site_ids = [found]
    closes: list[SiteClose] = []
    skipped: list[Skipped] = []
    for site_id in site_ids:  # in id order: two closes of every site never deadlock
        one, left_out = _close_site(session, lock_site(session, site_id), period, now)
        closes.append(one)
        skipped.extend(left_out)
    return CloseResult(period, closes, skipped)


def _close_site(
    session: Session, site: SiteRow, period: Period, now: datetime
) -> tuple[SiteClose, list[Skipped]]:
    ends = local_day(period.last_day, site.tzinfo)[1]
    if now < ends:
        raise Invalid(
            f"{period} has not ended at {site.slug} yet: it can be closed from "
            f"{ends.astimezone(site.tzinfo).isoformat()} ({site.timezone})"
        )
    existing = session.get(BillingCloseRow, (site.id, str(period)))
    skipped: list[Skipped] = []
    issued_now = False
    if existing is None:
        _check_order(session, site, period)
        claim = _insert_ignoring(session, BillingCloseRow, ["site_id", "period"]).values(
            site_id=site.id, period=str(period), closed_at=now
        )
        if session.execute(claim.returning(BillingCloseRow.site_id)).scalar_one_or_none():
            skipped = _issue(session, site, period, now)
            issued_now = True
        existing = session.get(BillingCloseRow, (site.id, str(period)), populate_existing=True)
        assert existing is not None  # noqa: S101 - claimed now or by another close
    invoices = _invoices_of(session, site.id, period)
    return SiteClose(site.id, site.slug, period, existing.closed_at, issued_now, invoices), skipped


def _check_order(session: Session, site: SiteRow, period: Period) -> None:
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

    member: MemberRow
    plan: PlanRow | None
    since: datetime | None
    """When the member's unbroken membership on `plan` began."""
    used: bool


def _billables(session: Session, site: SiteRow, start: datetime, end: datetime) -> list[_Billable]:
    """Members with a membership on a plan covering the site, or usage there, in `[start, end)`."""
    memberships = list(
        session.scalars(
            select(MembershipRow)
            .join(plan_sites, plan_sites.c.plan_id == MembershipRow.plan_id)
            .where(plan_sites.c.site_id == site.id)
            .order_by(MembershipRow.member_id, MembershipRow.starts_at, MembershipRow.id)
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
    by_member: dict[int, list[MembershipRow]] = {}
    for m in memberships:
        by_member.setdefault(m.member_id, []).append(m)
    members = set(users) | {
        m.member_id
        for m in memberships
        if m.starts_at < end and (m.ends_at is None or m.ends_at > start)
    }
    # Two queries for every member and plan, not two per member: a site may have thousands.
    rows = {m.id: m for m in session.scalars(select(MemberRow).where(MemberRow.id.in_(members)))}
    plans = {p.id: p for p in session.scalars(
        select(PlanRow).where(PlanRow.id.in_({m.plan_id for m in memberships})))}  # fmt: skip
    out: list[_Billable] = []
    for member_id in sorted(members):
        member = rows.get(member_id)
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
        out.append(_Billable(member, plans.get(chosen.plan_id), since, member_id in users))
    return out


@dataclass(frozen=True)
class Draft:
    """One member's invoice as closing the period now would issue it, not stored."""

    member: MemberRow
    invoice: Invoice
    usage: Usage


def draft_invoices(
    session: Session, site: SiteRow, period: Period
) -> tuple[list[Draft], list[Skipped]]:
    """The invoices closing `period` at `site` would issue, in member order, and the
    members with usage left out: computed from today's rows, nothing stored. The close
    stores these; the invoices page previews them a page at a time (`preview_invoices`)."""
    preview = preview_invoices(session, site, period)
    return preview.drafts, preview.skipped


@dataclass(frozen=True)
class Preview:
    """One page of what closing a period would issue."""

    drafts: list[Draft]
    """The invoices of the members in the page, in member order."""
    skipped: list[Skipped]
    """Every member with usage left out (all of them, whatever the page)."""
    total: int
    """How many invoices the close would issue, over all pages."""


def preview_invoices(
    session: Session, site: SiteRow, period: Period, *, offset: int = 0, limit: int | None = None
) -> Preview:
    """`draft_invoices` for the `limit` members to invoice from the `offset`-th on: who is
    billed and who is skipped is worked out for everyone (cheap), usage and amounts for
    the page only (a site of 2,000 members would otherwise take a second a view)."""
    start, end = period_span(site, period.first_day, period.last_day)
    first_closed = session.scalar(
        select(sa.func.min(BillingCloseRow.period)).where(BillingCloseRow.site_id == site.id)
    )
    site_from = Period.parse(first_closed or str(period)).first_day
    oldest = _months_before(period, SETTLE_MONTHS).first_day
    skipped: list[Skipped] = []
    billed: list[tuple[_Billable, list[PriceVersion]]] = []
    versions_of: dict[int, list[PriceVersion]] = {}
    for billable in _billables(session, site, start, end):
        member = billable.member
        if billable.plan is None:
            if billable.used:
                skipped.append(Skipped(site.slug, member.id, f"no membership at {site.slug}"))
            continue
        if billable.plan.id not in versions_of:  # one query per plan, not per member
            versions_of[billable.plan.id] = price_versions(session, site, billable.plan.id)
        versions = versions_of[billable.plan.id]
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
        billed.append((billable, versions))
    drafts: list[Draft] = []
    page = billed[offset:] if limit is None else billed[offset : offset + limit]
    for billable, versions in page:
        member = billable.member
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
        drafts.append(Draft(member, invoice, usage))
    return Preview(drafts, skipped, len(billed))


def _issue(session: Session, site: SiteRow, period: Period, now: datetime) -> list[Skipped]:
    """Compute and store the invoices of a period just claimed at the site."""
    drafts, skipped = draft_invoices(session, site, period)
    for number, draft in enumerate(drafts, start=1):
        _store(
            session,
            site,
            draft.member,
            draft.invoice,
            draft.usage,
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
    site: SiteRow,
    member: MemberRow,
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
