"""Billing by actual use: versioned prices, daily usage, idempotent monthly closes with
adjustments, invoices, CSV/JSON exports and PDFs.

Pure: `money` (rounding), `pricing` (price versions and terms), `usage` (a member's days
from their sessions and visits), `invoicing` (lines and totals). Shell, in SQL: `terms`
(plan terms as JSON), `prices` (a site's money settings and price versions), `spans` (a
member's billable time), `close` (a month's invoices, issued once), `invoices` (reading
them back), and `export`, `pdf`, `operator` (what `ruche billing` does). The package
exports the shell's API."""

from ruche.server.billing.close import (
    SETTLE_MONTHS,
    CloseResult,
    Draft,
    Preview,
    SiteClose,
    Skipped,
    close_period,
    draft_invoices,
    preview_invoices,
    usage_json,
)
from ruche.server.billing.invoices import (
    document_of,
    find_invoice,
    list_invoices,
    sites_used,
    usage_of,
)
from ruche.server.billing.prices import (
    MAX_LABEL,
    add_price_version,
    closed_through,
    list_price_versions,
    lock_site,
    price_versions,
    set_site_billing,
)
from ruche.server.billing.spans import (
    JOIN_GAP,
    member_spans,
    member_usage,
    period_span,
)
from ruche.server.billing.terms import (
    terms_json,
    terms_of,
)

__all__ = [
    "JOIN_GAP",
    "MAX_LABEL",
    "SETTLE_MONTHS",
    "CloseResult",
    "Draft",
    "Preview",
    "SiteClose",
    "Skipped",
    "add_price_version",
    "close_period",
    "closed_through",
    "document_of",
    "draft_invoices",
    "find_invoice",
    "list_invoices",
    "list_price_versions",
    "lock_site",
    "member_spans",
    "member_usage",
    "period_span",
    "preview_invoices",
    "price_versions",
    "set_site_billing",
    "sites_used",
    "terms_json",
    "terms_of",
    "usage_json",
    "usage_of",
]
