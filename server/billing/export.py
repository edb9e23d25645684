"""Issued invoices for accounting: one row per invoice line, as CSV or JSON.

Tax is computed per invoice, once per rate (`ruche.server.billing.invoicing`); accounting wants
it per line. Each line's `tax` is its share of its invoice's tax at its rate, in whole
minor units, given out by largest remainder: the lines' taxes at a rate add up exactly
to the invoice's tax at that rate, and `total = net + tax` per line, so the rows of an
invoice sum to its total to the cent.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from fractions import Fraction

from ruche.server.billing.invoices import document_of
from ruche.server.billing.money import Currency
from ruche.server.errors import Invalid
from ruche.server.storage.models import InvoiceRow

__all__ = ["COLUMNS", "AccountingRow", "accounting_rows", "allocate_tax", "to_csv", "to_json"]


@dataclass(frozen=True)
class AccountingRow:
    """One invoice line for the books; amounts as fixed-point strings."""

    invoice_number: str
    invoice_key: str
    issued_at: str
    site: str
    site_name: str
    member_id: int
    member_name: str
    member_email: str
    period: str
    line_period: str
    line_key: str
    description: str
    quantity: str
    unit: str
    unit_price: str
    per: int
    net: str
    tax_rate: str
    tax: str
    total: str
    currency: str
    adjustment: bool


COLUMNS = tuple(AccountingRow.__dataclass_fields__)


def allocate_tax(
    nets: Sequence[Decimal], rate: Decimal, tax: Decimal, currency: Currency
) -> list[Decimal]:
    """`tax` (the invoice's at `rate`) split over lines of these `nets`, to the minor unit.

    Each line gets its exact share rounded down, then the minor units left over go to
    the lines with the largest remainders (the first ones on a tie).
    """
    unit = Fraction(1, 10**currency.minor_units)
    exact = [Fraction(net) * Fraction(rate) / unit for net in nets]
    shares = [e.numerator // e.denominator for e in exact]
    left = int(Fraction(tax) / unit) - sum(shares)
    if not 0 <= left <= len(nets):
        raise Invalid(f"tax {tax} at rate {rate} does not match lines netting {sum(nets)}")
    by_remainder = sorted(range(len(nets)), key=lambda i: (-(exact[i] - shares[i]), i))
    for i in by_remainder[:left]:
        shares[i] += 1
    return [Decimal(share).scaleb(-currency.minor_units) for share in shares]


def _rows_of(row: InvoiceRow) -> list[AccountingRow]:
    document = document_of(row)
    currency = Currency.of(document.currency)
    lines = document.lines
    by_rate: dict[str, list[int]] = defaultdict(list)
    for index, line in enumerate(lines):
        by_rate[line.tax_rate].append(index)
    taxes = {t.rate: Decimal(t.tax) for t in document.taxes}
    tax_of: dict[int, Decimal] = {}
    for rate, indexes in by_rate.items():
        shares = allocate_tax(
            [Decimal(lines[i].net) for i in indexes], Decimal(rate), taxes[rate], currency
        )
        tax_of.update(zip(indexes, shares, strict=True))
    money = currency.format
    return [
        AccountingRow(
            invoice_number=row.number,
            invoice_key=row.key,
            issued_at=row.issued_at.isoformat(),
            site=document.site,
            site_name=row.site_name,
            member_id=row.member_id,
            member_name=row.member_name,
            member_email=row.member_email,
            period=row.period,
            line_period=line.period,
            line_key=line.key,
            description=line.description,
            quantity=line.quantity,
            unit=line.unit,
            unit_price=line.unit_price,
            per=line.per,
            net=line.net,
            tax_rate=line.tax_rate,
            tax=money(tax_of[i]),
            total=money(Decimal(line.net) + tax_of[i]),
            currency=currency.code,
            adjustment=line.adjustment,
        )
        for i, line in enumerate(lines)
    ]


def accounting_rows(invoices: Sequence[InvoiceRow]) -> list[AccountingRow]:
    """Every line of `invoices`, in their order then the lines'."""
    return [one for row in invoices for one in _rows_of(row)]


def to_csv(invoices: Sequence[InvoiceRow]) -> str:
    """RFC 4180 CSV with a header row: one row per line."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    for one in accounting_rows(invoices):
        writer.writerow([_cell(value) for value in asdict(one).values()])
    return out.getvalue()


def _cell(value: object) -> object:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value


def to_json(invoices: Sequence[InvoiceRow], *, period: str) -> str:
    """`{"period", "invoices": [headings and totals], "lines": [rows]}`, indented."""
    return json.dumps(
        {
            "period": period,
            "invoices": [
                {
                    "number": row.number,
                    "key": row.key,
                    "issued_at": row.issued_at.isoformat(),
                    "site": document_of(row).site,
                    "site_name": row.site_name,
                    "member_id": row.member_id,
                    "member_name": row.member_name,
                    "member_email": row.member_email,
                    "period": row.period,
                    "currency": row.currency,
                    "subtotal": row.subtotal,
                    "tax": row.tax,
                    "total": row.total,
                }
                for row in invoices
            ],
            "lines": [asdict(one) for one in accounting_rows(invoices)],
        },
        indent=2,
        ensure_ascii=False,
    )
