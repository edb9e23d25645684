"""Routes for billing: a site's prices, closing a period, invoices, exports and usage.

An admin, or a site's manager for that site, sets prices, closes periods and exports;
a member reads their own usage and invoices (with the sessions behind each line) and
downloads their PDFs. Amounts are decimal strings, never floats.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from ruche.server import billing, registry
from ruche.server.api.deps import CurrentKey, ManagedSite, PagingDep, SessionDep, id_path
from ruche.server.api.policy import ADMIN_ONLY, Principal, Scope, authorize, narrow
from ruche.server.api.schemas import (
    MAX_ID,
    ClosePublic,
    CloseRequest,
    HeldBackPublic,
    InvoiceDetailPublic,
    InvoiceLinePublic,
    InvoicePublic,
    InvoicesPublic,
    InvoiceTaxPublic,
    PeriodText,
    PriceVersionCreate,
    PriceVersionPublic,
    PriceVersionsPublic,
    SiteBillingPublic,
    SiteBillingUpdate,
    SiteClosePublic,
    SiteUsagePublic,
    SkippedPublic,
    UsageDayPublic,
    UsagePublic,
)
from ruche.server.billing.documents import DocumentHeldBack
from ruche.server.billing.export import to_csv, to_json
from ruche.server.billing.pdf import invoice_pdf as pdf_in_member_language
from ruche.server.billing.pricing import Period
from ruche.server.errors import Invalid
from ruche.server.storage.enums import Role
from ruche.server.storage.models import InvoiceRow, MemberRow, SiteRow

router = APIRouter(tags=["billing"])
OptionalId = Annotated[int | None, Query(ge=1, le=MAX_ID)]
PeriodQuery = Annotated[PeriodText, Query(description="A calendar month, YYYY-MM.")]
PDF = "application/pdf"
CSV = "text/csv; charset=utf-8"


class ExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"


def _now() -> datetime:
    return datetime.now(UTC)


def _period(text: str) -> Period:
    return Period.parse(text)


# --- a site's currency, tax rate and prices ------------------------------------------------


def _site_billing(session: SessionDep, site: SiteRow) -> SiteBillingPublic:
    closed = billing.closed_through(session, site.id)
    return SiteBillingPublic(
        site_id=site.id,
        currency=site.currency,
        tax_rate=site.tax_rate,
        closed_through=None if closed is None else str(closed),
    )


@router.get("/sites/{site_id}/billing")
def read_site_billing(site: ManagedSite, session: SessionDep) -> SiteBillingPublic:
    """The currency the site bills in, the tax rate new prices take, the last closed period."""
    return _site_billing(session, site)


@router.put("/sites/{site_id}/billing")
def update_site_billing(
    site: ManagedSite, body: SiteBillingUpdate, session: SessionDep
) -> SiteBillingPublic:
    """Set the currency (409 once the site has prices) and the tax rate new prices take."""
    billing.set_site_billing(session, site.id, currency=body.currency, rate=body.tax_rate)
    session.commit()
    return _site_billing(session, site)


@router.get("/sites/{site_id}/price-versions")
def list_price_versions(
    site: ManagedSite,
    session: SessionDep,
    paging: PagingDep,
    plan_id: Annotated[int | None, Query(ge=1, le=MAX_ID, description="One plan's.")] = None,
) -> PriceVersionsPublic:
    """The site's price versions, by plan then start date."""
    rows = billing.list_price_versions(session, site.id, plan_id=plan_id)
    return paging.page(PriceVersionsPublic, rows)


@router.post("/sites/{site_id}/price-versions", status_code=status.HTTP_201_CREATED)
def create_price_version(
    site: ManagedSite, body: PriceVersionCreate, session: SessionDep
) -> PriceVersionPublic:
    """Price a plan at the site from a local date on. Versions are never edited: a price
    change is a new version. 409 when it would start in a closed period."""
    row = billing.add_price_version(
        session,
        site_id=site.id,
        plan_id=body.plan_id,
        valid_from=body.valid_from,
        terms=body.terms.model_dump(),
        rate=body.tax_rate,
        label=body.label,
        now=_now(),
    )
    session.commit()
    return PriceVersionPublic.model_validate(row)


# --- closing -------------------------------------------------------------------------------


def _managed_or_all(key: Principal, site_id: int | None) -> int | None:
    """The site a close or export is for: a manager's own by default; all of them (None)
    for an admin only. Members are refused."""
    if key.role is Role.MANAGER and site_id is None:
        site_id = key.site_id
    authorize(key, ADMIN_ONLY if site_id is None else Scope.site(site_id))
    return site_id


@router.post("/billing/close")
def close_period(body: CloseRequest, key: CurrentKey, session: SessionDep) -> ClosePublic:
    """Issue the period's invoices at a site (every site for an admin who names none).

    Idempotent: closing again returns the invoices already issued, unchanged. 422 before
    the period has ended; 409 out of order (periods close one after the other).
    """
    period = _period(body.period)
    site_id = _managed_or_all(key, body.site_id)
    slug = None if site_id is None else registry.get(session, SiteRow, site_id).slug
    result = billing.close_period(session, period, site=slug, now=_now())
    session.commit()
    return ClosePublic(
        period=str(period),
        sites=[
            SiteClosePublic(
                site_id=one.site_id,
                site=one.site,
                closed_at=one.closed_at,
                issued_now=one.issued_now,
                invoices=len(one.invoices),
            )
            for one in result.sites
        ],
        invoices=[InvoicePublic.model_validate(row) for row in result.invoices],
        skipped=[
            SkippedPublic(site=s.site, member_id=s.member_id, reason=s.reason)
            for s in result.skipped
        ],
    )


# --- invoices ------------------------------------------------------------------------------


@router.get("/invoices")
def list_invoices(
    *,
    key: CurrentKey,
    session: SessionDep,
    paging: PagingDep,
    site_id: OptionalId = None,
    member_id: OptionalId = None,
    period: Annotated[PeriodText | None, Query(description="A calendar month, YYYY-MM.")] = None,
) -> InvoicesPublic:
    """Issued invoices: a member's own, a manager's site's, or any for an admin."""
    site_id, member_id = narrow(key, site_id=site_id, member_id=member_id)
    rows = billing.list_invoices(
        session,
        site_id=site_id,
        member_id=member_id,
        period=None if period is None else _period(period),
    )
    return paging.page(InvoicesPublic, rows)


def _invoice(
    invoice_id: Annotated[int, id_path("An invoice id.")], key: CurrentKey, session: SessionDep
) -> InvoiceRow:
    row = registry.get(session, InvoiceRow, invoice_id)
    authorize(key, Scope.site(row.site_id, member_id=row.member_id))
    return row


InvoiceInScope = Annotated[InvoiceRow, Depends(_invoice)]


def _held_back(items: Sequence[DocumentHeldBack]) -> list[HeldBackPublic]:
    return [HeldBackPublic(id=h.id, reason=h.reason, days=list(h.days)) for h in items]


@router.get("/invoices/{invoice_id}")
def read_invoice(row: InvoiceInScope) -> InvoiceDetailPublic:
    """An invoice with its lines, each naming the days and sessions behind it."""
    doc = billing.document_of(row)
    heading = InvoicePublic.model_validate(row).model_dump()
    return InvoiceDetailPublic(
        **heading,
        timezone=doc.timezone,
        versions=list(doc.versions),
        lines=[InvoiceLinePublic.model_validate(line.model_dump()) for line in doc.lines],
        taxes=[InvoiceTaxPublic.model_validate(t.model_dump()) for t in doc.taxes],
        held_back=_held_back(doc.held_back),
    )


@router.get(
    "/invoices/{invoice_id}/pdf",
    response_class=Response,
    responses={
        200: {
            "description": "The invoice as a PDF document.",
            "content": {PDF: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
def invoice_pdf(row: InvoiceInScope, session: SessionDep) -> Response:
    """The invoice as a PDF in its member's language: lines, tax, total and the usage
    behind each line."""
    return Response(
        pdf_in_member_language(session, row),
        media_type=PDF,
        headers={"Content-Disposition": f'attachment; filename="invoice-{row.number}.pdf"'},
    )


# --- exports and usage ---------------------------------------------------------------------


@router.get(
    "/billing/export",
    response_class=Response,
    responses={
        200: {
            "description": "One row per invoice line, for accounting.",
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
def export_invoices(
    *,
    key: CurrentKey,
    session: SessionDep,
    period: PeriodQuery,
    site_id: OptionalId = None,
    export_format: Annotated[
        ExportFormat, Query(alias="format", description="csv or json.")
    ] = ExportFormat.CSV,
) -> Response:
    """The period's issued invoices for accounting: one row per line with its share of the
    tax, at a manager's site or (admin) any or all sites."""
    parsed = _period(period)
    site_id = _managed_or_all(key, site_id)
    if site_id is not None:
        registry.get(session, SiteRow, site_id)
    rows = billing.list_invoices(session, site_id=site_id, period=parsed)
    name = f"invoices-{parsed}" + ("" if site_id is None else f"-site{site_id}")
    if export_format is ExportFormat.JSON:
        body, media = to_json(rows, period=str(parsed)), "application/json"
    else:
        body, media = to_csv(rows), CSV
    return Response(
        body,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}.{export_format}"'},
    )


@router.get("/billing/usage")
def read_usage(
    *,
    key: CurrentKey,
    session: SessionDep,
    period: PeriodQuery,
    member_id: OptionalId = None,
    site_id: OptionalId = None,
) -> UsagePublic:
    """A member's billable usage per local day of the period, with the sessions behind each
    day and what is held back: a member's own, or (manager, admin) any member's."""
    parsed = _period(period)
    site_id, member_id = narrow(key, site_id=site_id, member_id=member_id)
    if member_id is None:
        raise Invalid("member_id is required: whose usage?")
    registry.get(session, MemberRow, member_id)
    if site_id is not None:
        sites = [registry.get(session, SiteRow, site_id)]
    else:
        sites = billing.sites_used(session, member_id, parsed)
    out: list[SiteUsagePublic] = []
    for site in sites:
        usage = billing.member_usage(session, site, member_id, parsed.first_day, parsed.last_day)
        out.append(
            SiteUsagePublic(
                site_id=site.id,
                site=site.slug,
                timezone=site.timezone,
                days=[
                    UsageDayPublic(
                        day=d.day,
                        minutes=d.minutes,
                        first_presence=d.first_presence,
                        sessions=list(d.spans),
                    )
                    for d in usage.days
                ],
                held_back=[
                    HeldBackPublic(id=h.id, reason=h.reason, days=list(h.days))
                    for h in usage.held_back
                ],
            )
        )
    return UsagePublic(member_id=member_id, period=str(parsed), sites=out)
