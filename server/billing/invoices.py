"""Issued invoices read back: by period and site, by key or number, their document and usage."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import sqlalchemy as sa
from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server.billing.documents import InvoiceDocument, UsageDay
from ruche.server.billing.pricing import (
    Period,
)
from ruche.server.errors import NotFound
from ruche.server.storage.models import (
    DeskSessionRow,
    InvoiceRow,
    SiteRow,
    VisitRow,
)

_USAGE = TypeAdapter(tuple[UsageDay, ...])


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


def document_of(row: InvoiceRow) -> InvoiceDocument:
    """The invoice as issued (`Invoice.canonical()`, stored at issue)."""
    return InvoiceDocument.model_validate_json(row.document)


def usage_of(row: InvoiceRow) -> tuple[UsageDay, ...]:
    """The usage behind an issued invoice's lines, as stored at issue (`usage_json`)."""
    return _USAGE.validate_json(row.usage)


def sites_used(session: Session, member_id: int, period: Period) -> list[SiteRow]:
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
    return list(
        session.scalars(select(SiteRow).where(SiteRow.slug.in_(slugs)).order_by(SiteRow.id))
    )
