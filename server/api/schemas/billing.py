"""Billing: sites' money settings, price versions, closes and invoices."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from ruche.server.api.schemas.base import Day, Name, Page, RowId, _In, _Out
from ruche.server.billing.terms import TermsSpec as Terms

Amount = Annotated[
    str,
    StringConstraints(pattern=r"^\d{1,9}(\.\d{1,6})?$"),
    Field(description="A decimal amount as a string, such as '12.50' (exact: never a float)."),
]
Rate = Annotated[
    str,
    StringConstraints(pattern=r"^(0(\.\d{1,6})?|1(\.0{1,6})?)$"),
    Field(description="A tax rate as a fraction from 0 to 1, such as '0.2' for 20 %."),
]
CurrencyCode = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Z]{3}$"),
    Field(description="An ISO 4217 code, such as 'EUR'.", examples=["EUR"]),
]
PeriodText = Annotated[
    str,
    StringConstraints(pattern=r"^\d{4}-\d{2}$"),
    Field(description="A billing period: a calendar month, YYYY-MM.", examples=["2026-11"]),
]


class SiteBillingUpdate(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"currency": "EUR", "tax_rate": "0.2"}]}
    )

    currency: CurrencyCode | None = Field(
        default=None, description="Fixed once the site has price versions."
    )
    tax_rate: Rate | None = Field(
        default=None, description="The rate new price versions take unless given one."
    )


class SiteBillingPublic(BaseModel):
    site_id: int
    currency: str
    tax_rate: str
    closed_through: str | None = Field(description="The latest period closed at the site.")


class PriceVersionCreate(_In):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "plan_id": 1,
                    "valid_from": "2030-04-01",
                    "terms": {"kind": "day_pass", "price": "15.00"},
                }
            ]
        },
    )

    plan_id: RowId
    valid_from: Day = Field(description="The local date it is in force from.")
    terms: Terms
    tax_rate: Rate | None = Field(default=None, description="Omitted: the site's tax rate.")
    label: Name | None = Field(
        default=None,
        description="Its name on invoices, fixed for good; omitted: '{plan} from {valid_from}'.",
    )


class PriceVersionPublic(_Out):
    id: int
    plan_id: int
    site_id: int
    label: str
    valid_from: date
    terms: Terms
    tax_rate: str
    created_at: datetime


class PriceVersionsPublic(Page[PriceVersionPublic]):
    pass


class CloseRequest(_In):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"period": "2026-11", "site_id": 1}]}
    )

    period: PeriodText
    site_id: RowId | None = Field(
        default=None, description="Omitted: every site (a manager's own site)."
    )


class InvoicePublic(_Out):
    """An issued invoice's heading and totals; amounts as decimal strings."""

    id: int
    key: str = Field(description="SHA-256 of member, site, period and price versions.")
    number: str
    member_id: int
    member_name: str
    site_id: int
    site_name: str
    period: str
    status: str
    currency: str
    subtotal: str
    tax: str
    total: str
    issued_at: datetime


class InvoicesPublic(Page[InvoicePublic]):
    pass


class InvoiceLinePublic(BaseModel):
    key: str
    period: str = Field(description="The month charged: earlier for an adjustment.")
    description: str
    quantity: str
    unit: str
    unit_price: str
    per: int = Field(description="The unit price is for this many units.")
    net: str
    tax_rate: str
    version: str
    adjustment: bool
    days: list[date] = Field(description="The local days behind the line.")
    sessions: list[str] = Field(description="The visits and desk sessions behind the line.")


class InvoiceTaxPublic(BaseModel):
    rate: str
    base: str
    tax: str


class HeldBackPublic(BaseModel):
    id: str = Field(description="The visit or desk session.")
    reason: str = Field(description="stuck_occupied (suspect), open, ...")
    days: list[date]


class InvoiceDetailPublic(InvoicePublic):
    timezone: str
    versions: list[str]
    lines: list[InvoiceLinePublic]
    taxes: list[InvoiceTaxPublic]
    held_back: list[HeldBackPublic] = Field(description="Not billed: awaiting review or an end.")


class SiteClosePublic(BaseModel):
    site_id: int
    site: str
    closed_at: datetime
    issued_now: bool = Field(description="False: the period was closed before; nothing new.")
    invoices: int


class SkippedPublic(BaseModel):
    site: str
    member_id: int
    reason: str


class ClosePublic(BaseModel):
    period: str
    sites: list[SiteClosePublic]
    invoices: list[InvoicePublic]
    skipped: list[SkippedPublic] = Field(description="Members with usage no invoice bills.")


class UsageDayPublic(BaseModel):
    day: date
    minutes: int = Field(description="Billable minutes, rounded down.")
    first_presence: datetime
    sessions: list[str] = Field(description="The visits and desk sessions behind the day.")


class SiteUsagePublic(BaseModel):
    site_id: int
    site: str
    timezone: str
    days: list[UsageDayPublic]
    held_back: list[HeldBackPublic]


class UsagePublic(BaseModel):
    member_id: int
    period: str
    sites: list[SiteUsagePublic]
