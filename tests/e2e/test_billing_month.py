"""A simulated October billed through the real pipeline, checked against a hand computation.

`ruche.sim.day.plan_days` plans every day of October 2026 at a small Paris site (two
doors on `agent-a`, six desks on `agent-b` and `agent-c`) for six members, one or more
on each kind of plan; `ruche.sim.day_player` plays each day to the session's Mosquitto
as fast as acks allow; the server's own workers (`ServerWorkers`: ingestion, door
decisions) store it in PostgreSQL, `refresh_site` derives desk sessions and visits, and
`close_period` issues the invoices. The month holds the weekend the clocks go back
(Sunday 25 October has 25 hours), and Hugo stays past midnight twice, once through that
night's repeated hour.

The expected invoices are computed here by hand, plainly, from what the plan says
happened (its visits and attributed sessions per member) and the rules in
docs/billing.md: spans merged, gaps shorter than 15 minutes joined, time cut at Paris
midnights, whole minutes rounded down per day, each line rounded once half away from
zero, 20 % tax on the subtotal. Nothing of the billing core is called to compute them.

Then the door agent turns out to have been offline on Friday 30 October: its events of
that day (every tap, so every visit) reach the server only after October is closed.
October's invoices bill the month without them; the late batch becomes adjustment
lines on November's invoices, and October's stored invoices keep their bytes.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from ruche.broker.accounts import AgentAccount
from ruche.server import billing, registry
from ruche.server.billing.pricing import Period
from ruche.server.occupancy.refresh import refresh_site
from ruche.server.run import ServerWorkers
from ruche.server.settings import ServerMqtt, ServerSettings
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import AuditKind
from ruche.server.storage.models import (
    AuditRow,
    DeskSessionRow,
    InvoiceLineRow,
    InvoiceRow,
    VisitRow,
)
from ruche.sim.day import (
    AgentTiming,
    DayPlan,
    DaySpec,
    DeskSpot,
    DoorSpot,
    Member,
    SiteLayout,
    Stay,
    plan_days,
)
from ruche.sim.day_player import play_day

pytestmark = pytest.mark.integration

PARIS = ZoneInfo("Europe/Paris")
SEED = 17
"""A month whose Saturday night runs into the repeated hour, where every rule below bills
something, and where Dana walks in on the 30th (no check-in: only the door saw her, so
the late batch makes it a used day, and an overage day)."""
KEY = bytes.fromhex("5a0c7e21b9d84f3a6e1f0c2b7d9a8e43")
OCTOBER, NOVEMBER = Period(2026, 10), Period(2026, 11)
SET_UP = datetime(2026, 9, 1, tzinfo=UTC)
OCTOBER_CLOSED = datetime(2026, 11, 2, 9, tzinfo=UTC)
NOVEMBER_CLOSED = datetime(2026, 12, 2, 9, tzinfo=UTC)
DOORS, OFFLINE_DAY = "agent-a", date(2026, 10, 30)
TAX = Decimal("0.2")
GRACE = timedelta(minutes=15)
"""docs/billing.md: a gap shorter than this between a member's spans is billed."""
MINUTE = timedelta(minutes=1)


def oct_(day: int) -> date:
    return date(2026, 10, day)


# --- the site, its plans and prices ------------------------------------------------------

# Plan name -> price versions (label, valid from, terms), as docs/billing.md writes terms.
PRICES: dict[str, list[tuple[str, date, dict[str, Any]]]] = {
    "Resident": [
        ("resident-2026-09", date(2026, 9, 1),
         {"kind": "monthly", "fee": "250.00", "included": "10", "unit": "day",
          "overage": "22.50"}),
    ],
    "Flex": [
        ("flex-2026-09", date(2026, 9, 1),
         {"kind": "monthly", "fee": "180.00", "included": "40", "unit": "hour",
          "overage": "7.00"}),
    ],
    "Go": [
        ("go-2026-09", date(2026, 9, 1),
         {"kind": "pay_as_you_go", "per_minute": "0.045", "minimum_charge": "5.00",
          "daily_cap": "30.00"}),
        ("go-2026-10-19", oct_(19),
         {"kind": "pay_as_you_go", "per_minute": "0.055", "minimum_charge": "5.00",
          "daily_cap": "30.00"}),
    ],
    "Capped": [
        ("capped-2026-09", date(2026, 9, 1),
         {"kind": "pay_as_you_go", "per_minute": "0.035", "minimum_charge": "4.00",
          "daily_cap": "24.00", "monthly_cap": "150.00"}),
    ],
    "Day pass": [
        ("pass-2026-09", date(2026, 9, 1), {"kind": "day_pass", "price": "15.00"}),
        ("pass-2026-10-19", oct_(19), {"kind": "day_pass", "price": "18.00"}),
    ],
}  # fmt: skip

MEMBERS = {
    "dana": (Member("dana@month.example", bytes([0x04, 0x21, 0x6C, 1])), "Resident"),
    "hugo": (Member("hugo@month.example", bytes([0x04, 0x21, 0x6C, 2])), "Flex"),
    "paul": (Member("paul@month.example", bytes([0x04, 0x21, 0x6C, 3])), "Go"),
    "cleo": (Member("cleo@month.example", bytes([0x04, 0x21, 0x6C, 4])), "Capped"),
    "tess": (Member("tess@month.example", bytes([0x04, 0x21, 0x6C, 5])), "Day pass"),
    "rex": (Member("rex@month.example", bytes([0x04, 0x21, 0x6C, 6]), revoked=True), "Day pass"),
}
"""Rex's badge is revoked: he taps, is refused, and is billed nothing."""

WEEKDAYS = [d for d in range(1, 32) if oct_(d).weekday() < 5]
COMES: dict[str, list[int]] = {
    "dana": [d for d in WEEKDAYS if d not in (2, 16, 23)],
    "hugo": [1, 6, 8, 13, 14, 15, 20, 22, 24, 27, 29],
    "paul": [2, 5, 7, 9, 12, 14, 16, 19, 21, 23, 26, 28, 30],
    "cleo": [1, 5, 8, 12, 15, 19, 22, 25, 26, 29, 30],
    "tess": [3, 9, 17, 20, 25, 28, 30],
    "rex": [6, 26],
}
"""Days of October each member comes; nobody comes on the 4th, 10th, 11th, 18th, 31st."""
STAYS: dict[int, dict[str, Stay]] = {
    7: {"paul": "short"},
    14: {"hugo": "late"},
    21: {"paul": "short"},
    24: {"hugo": "late"},  # Saturday night into the 25-hour Sunday
    28: {"paul": "short"},
    29: {"cleo": "short"},
}
NO_SHOWS = {8, 22}


def layout_of(site: str) -> SiteLayout:
    return SiteLayout(
        site=site,
        timezone="Europe/Paris",
        site_key=KEY,
        doors=(DoorSpot(DOORS, "front"), DoorSpot(DOORS, "back")),
        desks=tuple(DeskSpot("agent-b" if i < 3 else "agent-c", f"desk-{i}") for i in range(6)),
    )


def october(layout: SiteLayout) -> tuple[DayPlan, ...]:
    specs = []
    for day in range(1, 32):
        members = [m for key, (m, _) in MEMBERS.items() if day in COMES[key]]
        stays = {MEMBERS[k][0].key: stay for k, stay in STAYS.get(day, {}).items()}
        seated = sum(1 for m in members if not m.revoked)
        specs.append(
            DaySpec(
                oct_(day),
                members,
                no_shows=1 if day in NO_SHOWS else 0,
                walk_ins=1 if seated >= 3 else 0,
                stays=stays,
            )
        )
    return plan_days(layout, specs, seed=SEED, timing=AgentTiming(heartbeat_s=600))


def seed_registry(url: str, layout: SiteLayout, plans: Sequence[DayPlan]) -> dict[str, int]:
    """The site, agents, doors, desks, plans with their prices, members with memberships
    and badges, and the month's bookings; returns member ids by the plan's member keys."""
    run_migrations(url)
    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            key = registry.create_site_key(session, layout.site_key)
            site = registry.create_site(session, slug=layout.site, name="Ruche Oberkampf",
                                        timezone=layout.timezone, key_id=key.id)  # fmt: skip
            session.flush()
            billing.set_site_billing(session, site.id, currency="EUR", rate="0.20")
            agents = {a: registry.create_agent(session, site_id=site.id, slug=a)
                      for a in layout.agents}  # fmt: skip
            zone = registry.create_zone(session, site_id=site.id, name="Open space")
            session.flush()
            for door in layout.doors:
                registry.create_door(session, site_id=site.id, slug=door.door,
                                     agent_id=agents[door.agent].id)  # fmt: skip
            desks = {
                spot.desk: registry.create_desk(session, zone_id=zone.id, slug=spot.desk,
                                                agent_id=agents[spot.agent].id, x=x, y=0)
                for x, spot in enumerate(layout.desks)
            }  # fmt: skip
            plan_ids = {}
            for name, versions in PRICES.items():
                plan = registry.create_plan(session, name=name, site_ids=[site.id],
                                            schedule={"kind": "24/7"})  # fmt: skip
                session.flush()
                plan_ids[name] = plan.id
                for label, valid_from, terms in versions:
                    billing.add_price_version(session, site_id=site.id, plan_id=plan.id,
                                              valid_from=valid_from, terms=terms, label=label,
                                              now=SET_UP)  # fmt: skip
            members = {}
            for name, (m, plan_name) in MEMBERS.items():
                member = registry.create_member(session, name=name.title(), email=m.key)
                session.flush()
                registry.create_membership(
                    session, member_id=member.id, plan_id=plan_ids[plan_name], starts_at=SET_UP
                )
                badge = registry.enrol_badge(session, member.id, key, m.uid)
                session.flush()
                if m.revoked:
                    registry.revoke_badge(session, badge.id)
                members[m.key] = member.id
            session.flush()
            for p in plans:
                for b in p.bookings:
                    registry.book(session, member_id=members[b.member], site_id=site.id,
                                  desk_id=desks[b.desk].id, starts_at=b.start,
                                  ends_at=b.end)  # fmt: skip
            return members
    finally:
        engine.dispose()


# --- the pipeline ----------------------------------------------------------------------------


def play(site: Any, pg_url: str, plans: Iterable[DayPlan], accounts: list[AgentAccount]) -> int:
    """The server's workers on `pg_url`; each plan played to them as fast as acks allow.
    Returns once every tap played has its decision audited; the taps played."""
    settings = ServerSettings(
        database_url=pg_url,
        mqtt=ServerMqtt(
            host=site.broker.host,
            port=site.broker.port,
            username=site.broker.server.username,
            password=site.broker.server.password,
        ),
    )
    engine = make_engine(pg_url)
    sessions = make_sessions(engine)
    workers = ServerWorkers.build(settings, sessions)
    decided = select(func.count()).where(
        AuditRow.site == site.site, AuditRow.kind == AuditKind.DECISION
    )
    with sessions() as session:
        before = session.scalar(decided) or 0
    played = 0
    try:
        workers.start()
        for plan in plans:
            summary = play_day(plan, host=site.broker.host, port=site.broker.port,
                               accounts=accounts)  # fmt: skip
            assert summary.acked == summary.total == plan.total, plan.day
            assert summary.answers == {
                (t.agent, t.seq): "unlock" if t.granted else "deny" for t in plan.taps
            }, plan.day
            played += len(plan.taps)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with sessions() as session:
                if (session.scalar(decided) or 0) >= before + played:
                    break
            time.sleep(0.1)
        else:
            pytest.fail(f"{played} taps played, not all decided in 10 s")
    finally:
        workers.stop()
        engine.dispose()
    return played


def refresh_and_close(url: str, site: str, period: Period, now: datetime) -> None:
    engine = make_engine(url)
    try:
        sessions = make_sessions(engine)
        with transaction(sessions) as session:
            refresh_site(session, site, now=now)
        with transaction(sessions) as session:
            billing.close_period(session, period, site=site, now=now)
    finally:
        engine.dispose()


def stored_spans(url: str, site: str, key_of: dict[int, str]) -> tuple[list[Any], list[Any]]:
    """The site's desk sessions and visits as refresh_site stored them, sorted."""
    engine = make_engine(url)
    try:
        with make_sessions(engine)() as session:
            desks = sorted(
                (r.agent, r.desk, r.opened_seq, r.start, r.end, key_of.get(r.member_id or 0),
                 r.attributed_by, r.closed_by, r.suspect)
                for r in session.scalars(select(DeskSessionRow).where(DeskSessionRow.site == site))
            )  # fmt: skip
            visits = sorted(
                (key_of[v.member_id], v.start, v.end, v.entry_agent, v.entry_seq, v.closed_by)
                for v in session.scalars(select(VisitRow).where(VisitRow.site == site))
            )
    finally:
        engine.dispose()
    return desks, visits


def invoices(url: str, period: Period) -> dict[int, InvoiceRow]:
    engine = make_engine(url)
    try:
        with make_sessions(engine)() as session:
            rows = session.scalars(select(InvoiceRow).where(InvoiceRow.period == str(period)))
            return {row.member_id: row for row in rows}
    finally:
        engine.dispose()


def stored_bytes(url: str, period: Period) -> dict[str, tuple[object, ...]]:
    """Every stored invoice of `period` and its lines, by key, as stored."""
    engine = make_engine(url)
    try:
        with make_sessions(engine)() as session:
            out: dict[str, tuple[object, ...]] = {}
            for row in session.scalars(select(InvoiceRow).where(InvoiceRow.period == str(period))):
                lines = session.scalars(
                    select(InvoiceLineRow)
                    .where(InvoiceLineRow.invoice_id == row.id)
                    .order_by(InvoiceLineRow.position)
                )
                out[row.key] = (
                    row.number, row.document, row.usage, row.subtotal, row.tax, row.total,
                    row.issued_at.isoformat(),
                    tuple((x.key, x.period, x.description, x.quantity, x.unit, x.unit_price,
                           x.per, x.net, x.tax_rate, x.version, x.adjustment) for x in lines),
                )  # fmt: skip
            return out
    finally:
        engine.dispose()


# --- the hand computation ----------------------------------------------------------------------


def midnight(day: date) -> datetime:
    """Paris midnight starting `day`, in UTC."""
    return datetime(day.year, day.month, day.day, tzinfo=PARIS).astimezone(UTC)


@dataclass(frozen=True)
class Used:
    """One local day of a member's billable presence, by hand."""

    day: date
    minutes: int
    spans: frozenset[str]


def spans_of(
    plans: Sequence[DayPlan], who: str, *, missing: date | None = None
) -> list[tuple[str, datetime, datetime]]:
    """The member's visits and attributed desk sessions the plans expect, named as
    docs/billing.md names them; the visits of day `missing` left out (not arrived)."""
    spans = []
    for plan in plans:
        spans += [
            (f"visit:{plan.site}/{v.entry_agent}#{v.entry_seq}", v.start, v.end)
            for v in plan.visits
            if v.member == who and plan.day != missing
        ]
        spans += [
            (f"desk:{plan.site}/{s.agent}/{s.desk}#{s.opened_seq}", s.start, s.end)
            for s in plan.sessions
            if s.member == who
        ]
    return spans


def used_days(spans: list[tuple[str, datetime, datetime]]) -> list[Used]:
    """Per Paris day: merged presence (short gaps joined) in whole minutes, and the spans
    with time on that day. Days with less than a minute are not used."""
    blocks: list[list[datetime]] = []
    for _, start, end in sorted(spans, key=lambda s: (s[1], s[2])):
        if blocks and start - blocks[-1][1] < GRACE:
            blocks[-1][1] = max(blocks[-1][1], end)
        else:
            blocks.append([start, end])
    presence: dict[date, timedelta] = defaultdict(timedelta)
    for start, end in blocks:
        day = start.astimezone(PARIS).date()
        while midnight(day) < end:
            lo, hi = max(start, midnight(day)), min(end, midnight(day + timedelta(days=1)))
            if lo < hi:
                presence[day] += hi - lo
            day += timedelta(days=1)
    behind: dict[date, set[str]] = defaultdict(set)
    for name, start, end in spans:
        for day in presence:
            if start < midnight(day + timedelta(days=1)) and end > midnight(day):
                behind[day].add(name)
    return [
        Used(day, presence[day] // MINUTE, frozenset(behind[day]))
        for day in sorted(presence)
        if presence[day] >= MINUTE
    ]


def cents(value: Decimal) -> Decimal:
    """Half away from zero to the cent (decimal's ROUND_HALF_UP is exactly that)."""
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass(frozen=True)
class Line:
    key: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    net: Decimal
    version: str
    per: int = 1
    days: tuple[date, ...] = ()
    sessions: tuple[str, ...] = ()
    period: Period = OCTOBER
    adjustment: bool = False


def line(key: str, qty: object, unit: str, price: str | Decimal, version: str, *,
         per: int = 1, days: Sequence[Used] = ()) -> Line:  # fmt: skip
    """A line as docs/billing.md prices it: quantity x price / per, rounded once."""
    quantity, unit_price = Decimal(str(qty)), Decimal(price)
    return Line(
        key=key,
        quantity=quantity,
        unit=unit,
        unit_price=unit_price,
        net=cents(quantity * unit_price / per),
        version=version,
        per=per,
        days=tuple(d.day for d in days),
        sessions=tuple(sorted({s for d in days for s in d.spans})),
    )


def terms(plan: str, day: date) -> tuple[str, dict[str, Any]]:
    """The label and terms of the plan's version in force on `day`."""
    label, terms_ = next((lb, t) for lb, start, t in reversed(PRICES[plan]) if start <= day)
    return label, terms_


def by_days(plan: str, used: list[Used]) -> list[Line]:
    """A monthly plan with included days: the first ten used days included, then overage."""
    label, t = terms(plan, oct_(1))
    included, over = used[:10], used[10:]
    lines = fees(plan, OCTOBER)
    if included:
        lines.append(line(f"included:{label}", len(included), "day", "0", label, days=included))
    if over:
        lines.append(line(f"overage:{label}", len(over), "day", t["overage"], label, days=over))
    return lines


def by_hours(plan: str, used: list[Used]) -> list[Line]:
    """A monthly plan with included hours: 2,400 minutes in date order, then overage."""
    label, t = terms(plan, oct_(1))
    left, inside_min, beyond_min = 40 * 60, 0, 0
    inside: list[Used] = []
    beyond: list[Used] = []
    for d in used:
        take = min(d.minutes, left)
        left -= take
        if take:
            inside.append(d)
            inside_min += take
        if d.minutes > take:
            beyond.append(d)
            beyond_min += d.minutes - take
    lines = fees(plan, OCTOBER)
    if inside:
        lines.append(line(f"included:{label}", inside_min, "minute", "0", label, days=inside))
    if beyond:
        lines.append(line(f"overage:{label}", beyond_min, "minute", t["overage"], label,
                          per=60, days=beyond))  # fmt: skip
    return lines


def by_minutes(plan: str, used: list[Used]) -> list[Line]:
    """Pay as you go: each day's minutes at the day's rate, at least the minimum, at most
    the daily cap; then the month brought back to its cap, if it has one (Capped has one
    version all month, so its cap is whole)."""
    lines = []
    for d in used:
        label, t = terms(plan, d.day)
        exact = d.minutes * Decimal(t["per_minute"])
        if exact < Decimal(t["minimum_charge"]):
            priced: tuple[object, str, str] = (1, "day", t["minimum_charge"])
        elif exact > Decimal(t["daily_cap"]):
            priced = (1, "day", t["daily_cap"])
        else:
            priced = (d.minutes, "minute", t["per_minute"])
        lines.append(line(f"payg:{label}:{d.day}", *priced, label, days=[d]))
    label, t = terms(plan, oct_(31))
    spent = sum((x.net for x in lines), Decimal(0))
    if t.get("monthly_cap") and spent > Decimal(t["monthly_cap"]):
        credit = Decimal(t["monthly_cap"]) - spent
        lines.append(line(f"cap:{label}", 1, "month", credit, label, days=used))
    return lines


def by_passes(plan: str, used: list[Used]) -> list[Line]:
    """A day pass per used day, at the price of the day."""
    lines = []
    for d in used:
        label, t = terms(plan, d.day)
        lines.append(line(f"pass:{label}:{d.day}", 1, "day pass", t["price"], label, days=[d]))
    return lines


HAND = {"Resident": by_days, "Flex": by_hours, "Go": by_minutes, "Capped": by_minutes,
        "Day pass": by_passes}  # fmt: skip
"""How each plan's October is billed, by hand (no version changes a monthly plan's terms
in October, so its fee and allowance are whole)."""


def month_lines(plan: str, used: list[Used]) -> list[Line]:
    return HAND[plan](plan, used)


def adjustments(billed: list[Line], now: list[Line]) -> list[Line]:
    """What October's repricing adds to what its invoice billed, key by key."""
    was, new = {x.key: x for x in billed}, {x.key: x for x in now}
    out = []
    for key in [*new, *sorted(set(was) - set(new))]:
        old = was[key].net if key in was else Decimal(0)
        latest = new.get(key)
        delta = (latest.net if latest else Decimal(0)) - old
        if delta:
            source = latest or was[key]
            out.append(
                Line(key, Decimal(1), "adjustment", delta, delta, source.version,
                     days=latest.days if latest else (),
                     sessions=latest.sessions if latest else (), adjustment=True)
            )  # fmt: skip
    return out


def as_stored(x: Line) -> tuple[object, ...]:
    return (x.key, str(x.period), x.quantity, x.unit, x.unit_price, x.per, f"{x.net:.2f}", TAX,
            x.version, [d.isoformat() for d in x.days], list(x.sessions), x.adjustment)  # fmt: skip


def document_lines(row: InvoiceRow) -> list[tuple[object, ...]]:
    return [
        (x["key"], x["period"], Decimal(x["quantity"]), x["unit"], Decimal(x["unit_price"]),
         x["per"], x["net"], Decimal(x["tax_rate"]), x["version"], x["days"], x["sessions"],
         x["adjustment"])
        for x in json.loads(row.document)["lines"]
    ]  # fmt: skip


def check_invoice(row: InvoiceRow, expected: list[Line], versions: list[str], who: str) -> None:
    """The stored invoice holds exactly the expected lines, and its totals add up."""
    assert document_lines(row) == [as_stored(x) for x in expected], who
    subtotal = sum((x.net for x in expected), Decimal(0))
    tax = cents(subtotal * TAX)
    document = json.loads(row.document)
    assert (row.subtotal, row.tax, row.total) == (
        f"{subtotal:.2f}",
        f"{tax:.2f}",
        f"{subtotal + tax:.2f}",
    ), who
    assert (document["subtotal"], document["tax"], document["total"]) == (
        row.subtotal, row.tax, row.total
    ), who  # fmt: skip
    assert document["versions"] == versions, who
    assert document["held_back"] == [], who
    assert row.currency == "EUR"


def versions_in(plan: str, period: Period) -> list[str]:
    """The labels of the plan's versions in force on some day of `period`."""
    in_force = {terms(plan, day)[0] for day in period.days}
    return [label for label, _, _ in PRICES[plan] if label in in_force]


def fees(plan: str, period: Period) -> list[Line]:
    """A monthly plan's fee for a whole month (no version changes its terms mid-month)."""
    if plan not in ("Resident", "Flex"):
        return []
    label, t = terms(plan, period.first_day)
    return [replace(line(f"fee:{label}", 1, "month", t["fee"], label), period=period)]


# --- the month ------------------------------------------------------------------------------


def check_the_plan(plans: Sequence[DayPlan]) -> None:
    """The planned month holds what it is meant to show."""
    by_day = {p.day: p for p in plans}
    hugo = MEMBERS["hugo"][0].key
    nights = [v for p in plans for v in p.visits if v.member == hugo and v.end >= p.end]
    assert [v.start.astimezone(PARIS).date() for v in nights] == [oct_(14), oct_(24)]
    # Saturday night ends after 03:00 summer time became 02:00 winter time: the hour from
    # 02:00 happened twice, so an hour more passed than the wall clock says, all billed.
    end = nights[1].end
    local = end.astimezone(PARIS)
    wall = timedelta(hours=local.hour, minutes=local.minute, seconds=local.second,
                     microseconds=local.microsecond)  # fmt: skip
    assert end - midnight(oct_(25)) == wall + timedelta(hours=1)
    sunday = [d for d in used_days(spans_of(plans, hugo)) if d.day == oct_(25)]
    assert sunday[0].minutes == (end - midnight(oct_(25))) // MINUTE
    assert by_day[oct_(25)].end - by_day[oct_(25)].start == timedelta(hours=25)
    assert by_day[oct_(31)].events[DOORS] == (), "the door agent's last events are the 30th's"
    assert by_day[OFFLINE_DAY].roles[MEMBERS["dana"][0].key] == "walk_in"
    roles = {role for p in plans for role in p.roles.values()}
    assert roles == {"badge", "booked", "walk_in", "no_show", "refused"}


def check_stored(
    url: str, site: str, key_of: dict[int, str], plans: Sequence[DayPlan], *, missing: date | None
) -> set[str]:
    """SQL holds the plans' desk sessions and visits (less the visits of day `missing`);
    returns who came through the doors that day."""
    desks, visits = stored_spans(url, site, key_of)
    assert desks == sorted(
        (s.agent, s.desk, s.opened_seq, s.start, s.end, s.member, s.attributed_by, "vacant", False)
        for p in plans
        for s in p.sessions
    )
    assert visits == sorted(
        (v.member, v.start, v.end, v.entry_agent, v.entry_seq, "exit")
        for p in plans
        for v in p.visits
        if p.day != missing
    )
    return {v.member for p in plans for v in p.visits if p.day == missing}


def check_october(
    url: str, members: dict[str, int], plans: Sequence[DayPlan]
) -> dict[str, list[Line]]:
    """Every October invoice as computed by hand, without the offline day's visits;
    returns the lines billed per member."""
    closed = invoices(url, OCTOBER)
    assert set(closed) == set(members.values())
    billed: dict[str, list[Line]] = {}
    for name, (member, plan) in MEMBERS.items():
        used = used_days(spans_of(plans, member.key, missing=OFFLINE_DAY))
        billed[name] = month_lines(plan, used)
        check_invoice(closed[members[member.key]], billed[name], versions_in(plan, OCTOBER), name)
    # The month exercises every rule it is meant to.
    assert billed["rex"] == []
    assert any(x.key.startswith("overage:") for x in billed["dana"]), "days beyond ten"
    assert any(x.key.startswith("overage:") for x in billed["hugo"]), "hours beyond forty"
    go = {(x.unit, x.unit_price) for x in billed["paul"]}
    assert {("day", Decimal("5.00")), ("day", Decimal("30.00"))} <= go, "minimum and cap"
    assert any(x.unit == "minute" for x in billed["paul"])
    assert any(x.key.startswith("cap:") for x in billed["cleo"]), "the monthly cap"
    assert {x.unit_price for x in billed["tess"]} == {Decimal(15), Decimal(18)}, "a new price"
    return billed


def check_november(
    url: str, members: dict[str, int], plans: Sequence[DayPlan], billed: dict[str, list[Line]]
) -> set[str]:
    """Every November invoice: its fees, and October repriced with every visit against what
    October billed, as adjustments; returns who was adjusted."""
    issued = invoices(url, NOVEMBER)
    assert set(issued) == set(members.values())
    adjusted = set()
    for name, (member, plan) in MEMBERS.items():
        repriced = month_lines(plan, used_days(spans_of(plans, member.key)))
        corrections = adjustments(billed[name], repriced)
        if corrections:
            adjusted.add(member.key)
        check_invoice(issued[members[member.key]], fees(plan, NOVEMBER) + corrections,
                      versions_in(plan, NOVEMBER), name)  # fmt: skip
    return adjusted


class TestBilledMonth:
    """October through the real pipeline; its invoices, then a late agent's adjustments."""

    def test_a_month_billed_as_computed_by_hand(self, site, pg_url):
        started = time.monotonic()
        layout = layout_of(site.site)
        plans = october(layout)
        check_the_plan(plans)
        members = seed_registry(pg_url, layout, plans)
        key_of = {member_id: key for key, member_id in members.items()}

        # Every day through the broker, the server's ingestion and door decisions; on the
        # 30th the door agent is offline and keeps its events.
        accounts = [*site.agents.values(), *site.broker.register(site.site, ["agent-c"]).values()]
        late = next(p for p in plans if p.day == OFFLINE_DAY).only([DOORS])
        online = [p.only(["agent-b", "agent-c"]) if p.day == OFFLINE_DAY else p for p in plans]
        assert play(site, pg_url, online, accounts) == sum(len(p.taps) for p in online)

        # October closed from what arrived: by hand, the plan less the 30th's visits.
        refresh_and_close(pg_url, site.site, OCTOBER, OCTOBER_CLOSED)
        came = check_stored(pg_url, site.site, key_of, plans, missing=OFFLINE_DAY)
        assert came, "people came through the doors on the 30th"
        billed = check_october(pg_url, members, plans)
        october_bytes = stored_bytes(pg_url, OCTOBER)
        assert len(october_bytes) == len(MEMBERS)

        # The door agent comes back after the close and sends its day; November's close
        # settles October again.
        assert play(site, pg_url, [late], accounts) == len(late.taps) > 0
        refresh_and_close(pg_url, site.site, NOVEMBER, NOVEMBER_CLOSED)
        check_stored(pg_url, site.site, key_of, plans, missing=None)
        adjusted = check_november(pg_url, members, plans, billed)
        assert adjusted, "the late batch changed what October should have billed"
        assert adjusted <= came

        # October's invoices are as issued, byte for byte.
        assert stored_bytes(pg_url, OCTOBER) == october_bytes
        assert time.monotonic() - started < 90, "a simulated month stays under 90 seconds"
