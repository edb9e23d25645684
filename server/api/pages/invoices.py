"""Invoices: the month a site's staff close, and the invoices a member downloads.

Staff (`/manage/invoices?site=<slug>&month=YYYY-MM`): before a month is closed, what
closing it would bill, member by member (`billing.draft_invoices`, the close's own
computation, nothing stored); the close itself (`POST /manage/invoices/close`, with a
confirmation box; closing again says it was already closed); once closed, the issued
invoices, each as a PDF, and the month as CSV for accounting (the `ruche billing pdf`
and `export` functions).

Members (`/my/invoices`): their own issued invoices, each with its lines and as a PDF
in their language. An invoice id is authorised as the API's `GET /invoices/{id}` does
(`InvoiceInScope`): another member's is a 403 page.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Final

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy import select

from ruche.server import billing
from ruche.server.api.deps import SessionDep
from ruche.server.api.pages.forms import back, outcome
from ruche.server.api.pages.guard import ManagerReader, MemberReader, member_reader, site_choice
from ruche.server.api.pages.rendering import page_locale, render, viewer_of
from ruche.server.api.policy import Scope, authorize
from ruche.server.api.routes.billing import InvoiceInScope
from ruche.server.billing.documents import InvoiceDocument
from ruche.server.billing.export import to_csv
from ruche.server.billing.pdf import invoice_pdf
from ruche.server.billing.pricing import Period
from ruche.server.billing.wording import Wording
from ruche.server.errors import Conflict, Invalid
from ruche.server.i18n import N_
from ruche.server.registry.schedule import local_day
from ruche.server.storage.models import BillingCloseRow, InvoiceRow, SiteRow

router = APIRouter(include_in_schema=False)
log = logging.getLogger(__name__)

PATH: Final = "/manage/invoices"
PAGE: Final = 50
"""Members per page of a month's invoices (a preview computes each one's usage)."""
MINE: Final = "/my/invoices"
PDF: Final = "application/pdf"
CSV: Final = "text/csv; charset=utf-8"

ERRORS: Final = {
    "bad_month": N_("Choose a month as year and month, such as 2026-11."),
    "confirm": N_("Tick the box to confirm, then close the month."),
    "not_ended": N_(
        "This month has not ended yet at this site: it can be closed from the day after its"
        " last day."
    ),
    "out_of_order": N_("Months close one after the other: close the earlier month first."),
    "cannot_close": N_(
        "This month cannot be closed as it stands: check the prices of the plans used."
    ),
}  # fmt: skip
NOTICES: Final = {
    "closed": N_("The month is closed: its invoices are issued."),
    "already_closed": N_("This month was already closed: nothing new was issued."),
}
YEARS: Final = range(2000, 2200)
"""The years a page shows: others are typing mistakes (and year 1 has no midnight before
it to measure a day from)."""
Slug = Annotated[str | None, Query(max_length=64)]
MonthText = Annotated[str | None, Query(max_length=32)]


def parse_month(text: str | None) -> Period | None:
    """`text` as a month (`YYYY-MM`, as `<input type="month">` sends it) of `YEARS`, else
    None."""
    try:
        period = Period.parse((text or "").strip())
    except Invalid:
        return None
    return period if period.year in YEARS else None


def read_month(text: str | None, default: Period) -> Period | None:
    """The month a page shows: `text`, `default` without one, None when it is not a month."""
    if text is None or not text.strip():
        return default
    return parse_month(text)


def shift(period: Period, months: int) -> Period | None:
    """The month `months` after `period` (before, when negative); None outside `YEARS`."""
    index = period.year * 12 + period.month - 1 + months
    year = index // 12
    return Period(year, index % 12 + 1) if year in YEARS else None


def current_month(site: SiteRow, now: datetime) -> Period:
    return Period.of(now.astimezone(site.tzinfo).date())


def reader_wording(request: Request, timezone: str, currency: str) -> Wording:
    """Invoices written for whoever reads this page, in the page's language."""
    return Wording(page_locale(request, viewer_of(request)), timezone, currency)


@dataclass(frozen=True)
class Card:
    """One member's invoice on a page: issued, or as closing would issue it."""

    name: str
    email: str
    document: InvoiceDocument
    row: InvoiceRow | None = None


# --- staff ---------------------------------------------------------------------------------


@router.get(PATH, response_class=HTMLResponse)
def invoices_page(
    request: Request,
    *,
    reader: ManagerReader,
    session: SessionDep,
    site: Slug = None,
    month: MonthText = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
) -> HTMLResponse:
    """A site's month: what closing it would bill, or the invoices it issued, `PAGE`
    members at a time."""
    chosen, sites = site_choice(session, reader, site)
    now = datetime.now(UTC)
    this_month = current_month(chosen, now)
    period = read_month(month, shift(this_month, -1) or this_month)
    words = reader_wording(request, chosen.timezone, chosen.currency)
    common: dict[str, Any] = {
        "site": chosen,
        "sites": sites,
        "words": words,
        "path": PATH,
        "closed_through": billing.closed_through(session, chosen.id),
    }
    if period is None:
        return render(request, "invoices/manage.html", timezone=chosen.timezone,
                      status_code=422, message={"kind": "error", "text": ERRORS["bad_month"]},
                      period=None, month_text=month or "", **common)  # fmt: skip
    closed = session.get(BillingCloseRow, (chosen.id, str(period)))
    cards: list[Card] = []
    skipped: list[billing.Skipped] = []
    problem: str | None = None
    offset, total = (page - 1) * PAGE, 0
    if closed is not None:
        rows = billing.list_invoices(session, site_id=chosen.id, period=period)
        total = len(rows)
        cards = [Card(r.member_name, r.member_email, billing.document_of(r), r)
                 for r in rows[offset : offset + PAGE]]  # fmt: skip
    else:
        try:
            preview = billing.preview_invoices(session, chosen, period, offset=offset,
                                               limit=PAGE)  # fmt: skip
        except Invalid as exc:
            problem = str(exc)
        else:
            skipped, total = preview.skipped, preview.total
            cards = [
                Card(d.member.name, d.member.email,
                     InvoiceDocument.model_validate_json(d.invoice.to_json()))
                for d in preview.drafts
            ]  # fmt: skip
    ended = local_day(period.last_day, chosen.tzinfo)[1] <= now
    return render(
        request, "invoices/manage.html", timezone=chosen.timezone, period=period,
        month_text=str(period), closed=closed, cards=cards, skipped=skipped, problem=problem,
        ended=ended, previous=shift(period, -1), following=shift(period, 1),
        message=outcome(request, ERRORS, NOTICES), total=total, page=page,
        pages=max(1, -(-total // PAGE)), first=offset + 1, **common,
    )  # fmt: skip


@router.post(f"{PATH}/close")
def close_month(
    reader: ManagerReader,
    session: SessionDep,
    site: Annotated[str, Form(max_length=64)],
    month: Annotated[str, Form(max_length=32)],
    confirm: Annotated[str | None, Form(max_length=8)] = None,
) -> RedirectResponse:
    """Issue the month's invoices at the site, once; closing again issues nothing."""
    chosen, _ = site_choice(session, reader, site)
    period = parse_month(month)
    if period is None:
        return back(PATH, error="bad_month", site=chosen.slug)
    here = {"site": chosen.slug, "month": str(period)}
    if confirm != "yes":
        return back(PATH, error="confirm", **here)
    now = datetime.now(UTC)
    if local_day(period.last_day, chosen.tzinfo)[1] > now:
        return back(PATH, error="not_ended", **here)
    try:
        result = billing.close_period(session, period, site=chosen.slug, now=now)
    except Conflict:
        session.rollback()
        return back(PATH, error="out_of_order", **here)
    except Invalid:
        session.rollback()
        log.warning("closing %s at %s was refused", period, chosen.slug, exc_info=True)
        return back(PATH, error="cannot_close", **here)
    session.commit()
    issued = any(one.issued_now for one in result.sites)
    return back(PATH, done="closed" if issued else "already_closed", **here)


@router.get(f"{PATH}/export.csv")
def export_month(
    reader: ManagerReader, session: SessionDep, site: Slug = None, month: MonthText = None
) -> Response:
    """The month's issued invoices for accounting, one row per line (`ruche billing export`)."""
    chosen, _ = site_choice(session, reader, site)
    period = parse_month(month)
    if period is None:
        raise Invalid("month is written YYYY-MM, such as 2026-11")
    rows = billing.list_invoices(session, site_id=chosen.id, period=period)
    name = f"invoices-{period}-{chosen.slug}.csv"
    return Response(to_csv(rows), media_type=CSV,
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})  # fmt: skip


@router.get(PATH + "/{invoice_id}/pdf")
def staff_invoice_pdf(reader: ManagerReader, row: InvoiceInScope, session: SessionDep) -> Response:
    """An issued invoice of the reader's site as a PDF, in its member's language."""
    authorize(reader, Scope.site(row.site_id))
    return _pdf(session, row)


def _pdf(session: SessionDep, row: InvoiceRow) -> Response:
    return Response(
        invoice_pdf(session, row),
        media_type=PDF,
        headers={"Content-Disposition": f'attachment; filename="invoice-{row.number}.pdf"'},
    )


# --- members -------------------------------------------------------------------------------


@router.get(MINE, response_class=HTMLResponse)
def my_invoices(request: Request, reader: MemberReader, session: SessionDep) -> HTMLResponse:
    """The member's issued invoices, newest first."""
    rows = billing.list_invoices(session, member_id=reader.member_id)
    rows.reverse()
    sites = {s.id: s for s in session.scalars(select(SiteRow))}
    words = {
        row.id: reader_wording(request, sites[row.site_id].timezone, row.currency) for row in rows
    }
    return render(request, "invoices/mine.html", rows=rows, words=words, sites=sites)


@router.get(
    MINE + "/{invoice_id}", response_class=HTMLResponse, dependencies=[Depends(member_reader)]
)
def my_invoice(request: Request, row: InvoiceInScope) -> HTMLResponse:
    """One of the member's invoices: its lines, its totals and the days behind them."""
    document = billing.document_of(row)
    words = reader_wording(request, document.timezone, document.currency)
    usage = {day.day: day for day in billing.usage_of(row)}
    return render(
        request, "invoices/detail.html", timezone=document.timezone, row=row,
        card=Card(row.member_name, row.member_email, document, row), words=words, usage=usage,
        period=Period.parse(row.period),
    )  # fmt: skip


@router.get(MINE + "/{invoice_id}/pdf", dependencies=[Depends(member_reader)])
def my_invoice_pdf(row: InvoiceInScope, session: SessionDep) -> Response:
    """One of the member's invoices as a PDF, in their language."""
    return _pdf(session, row)
