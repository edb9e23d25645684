"""An issued invoice's stored JSON, read back as typed values: the document
(`Invoice.canonical()`, written at issue and never changed) and the usage behind its
lines. Read once here; the PDF, the exports and the API use the fields.

Amounts stay the fixed-point strings the document holds: they are what was issued, to
the cent, and nothing rounds them again.

    >>> doc = InvoiceDocument.model_validate_json(
    ...     '{"currency":"EUR","held_back":[],"key":"k","lines":[],"member":7,'
    ...     '"period":"2026-11","site":"lyon","subtotal":"0.00","tax":"0.00","taxes":[],'
    ...     '"timezone":"Europe/Paris","total":"0.00","versions":[]}'
    ... )
    >>> (doc.site, doc.total, doc.lines)
    ('lyon', '0.00', ())
"""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict


class _Stored(BaseModel):
    # What was issued is read as it is: a field added later must not break old invoices.
    model_config = ConfigDict(extra="ignore", frozen=True)


class DocumentLine(_Stored):
    """One line: `quantity` `unit` at `unit_price` per `per` units, `net` before tax."""

    key: str
    period: str
    """The month charged: earlier than the invoice's for an adjustment."""
    description: str
    quantity: str
    unit: str
    unit_price: str
    per: int
    net: str
    tax_rate: str
    version: str
    adjustment: bool
    days: tuple[date, ...]
    sessions: tuple[str, ...]


class DocumentTax(_Stored):
    rate: str
    base: str
    tax: str


class DocumentHeldBack(_Stored):
    """A span not billed yet: a suspect session awaiting review, or one still open."""

    id: str
    reason: str
    days: tuple[date, ...]


class InvoiceDocument(_Stored):
    """The invoice as issued: its lines, taxes and totals in `currency`."""

    currency: str
    held_back: tuple[DocumentHeldBack, ...]
    key: str
    lines: tuple[DocumentLine, ...]
    member: int
    period: str
    site: str
    subtotal: str
    tax: str
    taxes: tuple[DocumentTax, ...]
    timezone: str
    total: str
    versions: tuple[str, ...]


class UsageDay(_Stored):
    """A day behind an invoice's lines, as it stood at issue."""

    day: date
    first_presence: datetime
    minutes: int
    sessions: tuple[str, ...]
