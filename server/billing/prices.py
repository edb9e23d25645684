"""A site's money settings and its plans' price versions, in SQL.

A plan is priced per site: each version holds pure plan terms as JSON
(`ruche.server.billing.terms`), the tax rate (the site's, unless given) and is in force
from a local date; the currency is the site's and is fixed once the site has prices. A
version may not start in or before a closed period: that would rewrite invoices already
issued."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server.billing.money import Currency, decimal_text, tax_rate
from ruche.server.billing.pricing import (
    Period,
    PriceVersion,
)
from ruche.server.billing.terms import terms_json, terms_of
from ruche.server.errors import Conflict, Invalid, NotFound
from ruche.server.storage.models import (
    BillingCloseRow,
    PlanRow,
    PriceVersionRow,
    SiteRow,
)

MAX_LABEL = 100


def lock_site(session: Session, site_id: int) -> SiteRow:
    """The site row, locked until the transaction ends (PostgreSQL; SQLite locks it all).

    Closing a period and adding a price version both take it, so neither sees the
    other half done.
    """
    site = session.scalars(
        select(SiteRow)
        .where(SiteRow.id == site_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if site is None:
        raise NotFound("Site", site_id)
    return site


def closed_through(session: Session, site_id: int) -> Period | None:
    """The latest period closed at the site, if any."""
    latest = session.scalar(
        select(sa.func.max(BillingCloseRow.period)).where(BillingCloseRow.site_id == site_id)
    )
    return None if latest is None else Period.parse(latest)


def set_site_billing(
    session: Session, site_id: int, *, currency: str | None = None, rate: str | None = None
) -> SiteRow:
    """Set the currency a site bills in and the tax rate its new price versions take.

    The currency is fixed once the site has price versions: amounts already set would
    change meaning.
    """
    site = lock_site(session, site_id)
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
    site = lock_site(session, site_id)
    plan = session.get(PlanRow, plan_id)
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


def price_versions(session: Session, site: SiteRow, plan_id: int) -> list[PriceVersion]:
    """The plan's versions at the site as the pure core's values."""
    currency = Currency.of(site.currency)
    return [
        PriceVersion(
            row.label, row.valid_from, terms_of(row.terms), currency, Decimal(row.tax_rate)
        )
        for row in list_price_versions(session, site.id, plan_id=plan_id)
    ]
