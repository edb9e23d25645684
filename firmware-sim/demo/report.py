"""What `ruche demo` reports: counts read back from the stores, an invoice preview, and
the summary as text.

Everything here reads what the server stored (SQL) and wrote (InfluxDB); nothing is
taken from what the demo meant to send, so the summary says what Ruche made of the day.
The invoice preview runs the billing core (`ruche.server.billing.invoicing.compute_invoice`) on
each member's usage of the month so far, as `ruche billing close` would at the month's
end, without storing anything: the month is not over, and closing it would fix it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ruche.server import billing
from ruche.server.billing.invoicing import compute_invoice
from ruche.server.billing.money import Currency
from ruche.server.billing.pricing import Period
from ruche.server.storage.enums import AuditKind
from ruche.server.storage.models import (
    AuditRow,
    BookingRow,
    DeskSessionRow,
    MemberRow,
    MembershipRow,
    PlanRow,
    SiteRow,
    StoredEventRow,
    VisitRow,
)

__all__ = [
    "StoreCounts",
    "decisions",
    "events",
    "influx_points",
    "invoice_preview",
    "store_counts",
    "summary_lines",
]


@dataclass(frozen=True)
class StoreCounts:
    """What SQL holds for a site."""

    events: dict[str, int]
    """Stored events per channel."""
    decisions: dict[str, int]
    """Door decisions audited: `allowed`, `denied`."""
    sessions: dict[str, int]
    """Desk sessions: `total`, by attribution (`badge`, `booking`, `none`), `open`, `suspect`."""
    visits: int
    bookings: dict[str, int]
    """Bookings by status, and `total`."""


def events(session: Session, site: str) -> dict[str, int]:
    rows = session.execute(
        select(StoredEventRow.channel, func.count())
        .where(StoredEventRow.site == site)
        .group_by(StoredEventRow.channel)
    )
    return dict(sorted(rows))


def decisions(session: Session, site: str) -> dict[str, int]:
    rows = dict(
        session.execute(
            select(AuditRow.allowed, func.count())
            .where(AuditRow.site == site, AuditRow.kind == AuditKind.DECISION)
            .group_by(AuditRow.allowed)
        ).all()
    )
    return {"allowed": rows.get(True, 0), "denied": rows.get(False, 0)}


def store_counts(session: Session, site: str) -> StoreCounts:
    rows = session.execute(
        select(DeskSessionRow.attributed_by, DeskSessionRow.end, DeskSessionRow.suspect).where(
            DeskSessionRow.site == site
        )
    )
    sessions: Counter[str] = Counter({"total": 0, "badge": 0, "booking": 0, "none": 0})
    for attributed_by, end, suspect in rows:
        sessions.update(["total", attributed_by, *(["open"] if end is None else []),
                         *(["suspect"] if suspect else [])])  # fmt: skip
    visits = session.scalar(select(func.count()).where(VisitRow.site == site)) or 0
    bookings = Counter(
        str(status)
        for status in session.scalars(
            select(BookingRow.status)
            .join(SiteRow, SiteRow.id == BookingRow.site_id)
            .where(SiteRow.slug == site)
        )
    )
    return StoreCounts(
        events=events(session, site),
        decisions=decisions(session, site),
        sessions={"open": 0, "suspect": 0, **sessions},
        visits=visits,
        bookings={"total": sum(bookings.values()), **dict(sorted(bookings.items()))},
    )


def influx_points(url: str, database: str, *, timeout: float = 10) -> dict[str, int]:
    """Points per measurement in `database` (the largest field count of each)."""

    def query(q: str) -> list[dict[str, Any]]:
        response = httpx.get(f"{url}/query", params={"db": database, "q": q}, timeout=timeout)
        response.raise_for_status()
        series: list[dict[str, Any]] = response.json()["results"][0].get("series") or []
        return series

    names = [row[0] for s in query("SHOW MEASUREMENTS") for row in s["values"]]
    points: dict[str, int] = {}
    for name in names:
        quoted = name.replace("\\", "\\\\").replace('"', '\\"')
        series = query(f'SELECT count(*) FROM "{quoted}"')  # noqa: S608 - InfluxQL, quoted
        points[name] = max((int(v) for s in series for v in s["values"][0][1:]), default=0)
    return dict(sorted(points.items()))


def invoice_preview(session: Session, site_slug: str, day: date) -> dict[str, Any]:
    """Each plan's invoices for `day`'s month as they stand, computed and not stored."""
    site = session.scalars(select(SiteRow).where(SiteRow.slug == site_slug)).one()
    period = Period.of(day)
    currency = Currency.of(site.currency)
    members = session.execute(
        select(MemberRow.id, PlanRow.id, PlanRow.name)
        .join(MembershipRow, MembershipRow.member_id == MemberRow.id)
        .join(PlanRow, PlanRow.id == MembershipRow.plan_id)
        .order_by(PlanRow.id, MemberRow.id)
    )
    plans: dict[str, dict[str, Any]] = {}
    totals: dict[str, Decimal] = {}
    for member_id, plan_id, plan_name in members:
        versions = billing.price_versions(session, site, plan_id)
        if not versions:
            continue
        usage = billing.member_usage(session, site, member_id, period.first_day, period.last_day)
        invoice = compute_invoice(member=member_id, site=site.slug, period=period, usage=usage,
                                  versions=versions)  # fmt: skip
        came = any(d.day == day and d.minutes > 0 for d in usage.days)
        entry = plans.setdefault(plan_name, {"plan": plan_name, "members": 0, "came": 0,
                                             "lines": 0, "total": Decimal(0)})  # fmt: skip
        entry["members"] += 1
        entry["came"] += int(came)
        entry["lines"] += len(invoice.lines)
        entry["total"] += invoice.total
        totals[plan_name] = entry["total"]
    for entry in plans.values():
        entry["total"] = currency.format(entry["total"])
    return {
        "period": str(period),
        "currency": currency.code,
        "issued": False,
        "plans": list(plans.values()),
        "total": currency.format(sum(totals.values(), Decimal(0))),
    }


def _n(value: int) -> str:
    return f"{value:,}"


def _parts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{name} {_n(count)}" for name, count in counts.items())


def summary_lines(summary: Mapping[str, Any], terms: Mapping[str, str]) -> list[str]:
    """The summary for a person: a few lines. `terms` describes each plan in a few words."""
    played = summary["played"]
    whole = "the whole day" if played["complete"] else "stopped early"
    events = summary["events"]
    doors = summary["door_decisions"]
    sessions = summary["sessions"]
    bookings = summary["bookings"]
    lines = [
        f"summary: {played['day']} from {played['from']} to {played['to']} ({whole}) in "
        f"{played['elapsed_s']:.0f} s at {played['speed']:g}x",
        f"  events:   {_n(sum(events.values()))} stored ({_parts(events) or 'none'})",
        f"  doors:    {_n(doors['allowed'])} allowed, {_n(doors['denied'])} denied",
        f"  sessions: {_n(sessions['total'])} desk sessions (by badge {sessions['badge']}, "
        f"by booking {sessions['booking']}, nobody's {sessions['none']}; "
        f"{sessions['open']} open), {_n(summary['visits'])} visits through the doors",
        f"  bookings: {bookings['total']} desk bookings ({bookings.get('booked', 0)} booked, "
        f"{bookings.get('no_show', 0)} released as no-shows)",
    ]
    points = summary["points"]
    if points is None:
        lines.append("  influxdb: not running (no points written)")
    else:
        lines.append(f"  influxdb: {_n(sum(points.values()))} points ({_parts(points)})")
    invoices = summary["invoices"]
    lines.append(
        f"  invoices for {invoices['period']}, a preview (nothing issued: the month is not over):"
    )
    width = max((len(p["plan"]) for p in invoices["plans"]), default=0)
    lines.extend(
        f"    {plan['plan']:<{width}}  {terms.get(plan['plan'], ''):<28} "
        f"{plan['members']:>3} members, {plan['came']:>3} came today  "
        f"{plan['total']:>10} {invoices['currency']}"
        for plan in invoices["plans"]
    )
    lines.append(f"    {'in all, tax included':<{width + 59}}{invoices['total']:>10} "
                 f"{invoices['currency']}")  # fmt: skip
    return lines
