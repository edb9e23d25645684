"""What `ruche billing ...` does, over a database URL, as lines for the terminal.

Each function opens its own engine and transaction; domain errors (`NotFound`,
`Conflict`, `Invalid`) reach the CLI unchanged, to be printed without a traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Literal

from sqlalchemy.orm import Session

from ruche.server import billing, registry
from ruche.server.billing.export import accounting_rows, to_csv, to_json
from ruche.server.billing.pdf import invoice_pdf
from ruche.server.billing.pricing import Period
from ruche.server.storage.db import make_engine, make_sessions, transaction

Say = Callable[[str], None]


@contextmanager
def _session(url: str) -> Iterator[Session]:
    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            yield session
    finally:
        engine.dispose()


def close(url: str, *, period: str, site: str | None, now: datetime, say: Say, warn: Say) -> None:
    """Close `period` (at `site`, else every site) and tell what was issued, or found."""
    parsed = Period.parse(period)
    with _session(url) as session:
        result = billing.close_period(session, parsed, site=site, now=now)
        for one in result.sites:
            totals: dict[str, Decimal] = {}
            for row in one.invoices:
                totals[row.currency] = totals.get(row.currency, Decimal(0)) + Decimal(row.total)
            money = ", ".join(f"{amount} {code}" for code, amount in sorted(totals.items()))
            if one.issued_now:
                say(
                    f"{one.site}: closed {parsed}, {len(one.invoices)} invoices issued"
                    + (f" (total {money})" if money else "")
                )
            else:
                say(
                    f"{one.site}: {parsed} was already closed on "
                    f"{one.closed_at:%Y-%m-%d %H:%M} UTC: {len(one.invoices)} invoices, "
                    "nothing new"
                )
            for row in one.invoices:
                say(
                    f"  {row.number}  {row.member_name} <{row.member_email}>  "
                    f"{row.total} {row.currency}"
                )
        for skipped in result.skipped:
            warn(f"not billed: member {skipped.member_id} at {skipped.site} ({skipped.reason})")


def export(
    url: str,
    *,
    period: str,
    site: str | None,
    fmt: Literal["csv", "json"],
    out: Path,
    say: Say,
) -> None:
    """Write the period's invoice lines for accounting to `out`."""
    parsed = Period.parse(period)
    with _session(url) as session:
        site_id = None if site is None else registry.get_site_by_slug(session, site).id
        rows = billing.list_invoices(session, site_id=site_id, period=parsed)
        text = to_csv(rows) if fmt == "csv" else to_json(rows, period=str(parsed))
        lines = len(accounting_rows(rows))
    out.write_text(text, encoding="utf-8")
    say(f"wrote {lines} lines of {len(rows)} invoices for {parsed} to {out}")
    if not rows:
        say(f"no invoices for {parsed} yet: close it first (ruche billing close)")


def pdf(url: str, *, invoice: str, out: Path, say: Say) -> None:
    """Write the invoice with this key or number as a PDF to `out`."""
    with _session(url) as session:
        row = billing.find_invoice(session, invoice)
        document = invoice_pdf(session, row)
        what = f"{row.number} ({row.member_name}, {row.period}, {row.total} {row.currency})"
    out.write_bytes(document)
    say(f"wrote invoice {what} to {out}")
