"""Billing by actual use: versioned prices, daily usage, idempotent monthly closes with
adjustments, invoices, CSV/JSON exports and PDFs.

Pure: `money` (rounding), `pricing` (price versions and terms), `usage` (a member's days
from their sessions and visits), `invoicing` (lines and totals). Shell: `close` (the
month's invoices in SQL), `export`, `pdf`, `operator` (what `ruche billing` does). The
package exports the close's API."""

from ruche.server.billing.close import (
    JOIN_GAP,
    MAX_LABEL,
    SETTLE_MONTHS,
    CloseResult,
    SiteClose,
    Skipped,
    add_price_version,
    close_period,
    closed_through,
    document_of,
    find_invoice,
    list_invoices,
    list_price_versions,
    member_spans,
    member_usage,
    period_span,
    price_versions,
    set_site_billing,
    sites_used,
    terms_json,
    terms_of,
    usage_json,
    usage_of,
)

__all__ = [
    "JOIN_GAP",
    "MAX_LABEL",
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
