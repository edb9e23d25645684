"""Billing properties over random presence, prices and price changes (Hypothesis).

The window runs across the Paris fall-back night (2026-10-25, 25 hours) and the end of
October, so every example can touch a DST day, midnight and a month boundary.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from hypothesis import given, settings
from hypothesis import strategies as st

from ruche.server.billing.invoicing import Billed, Invoice, compute_invoice
from ruche.server.billing.money import Currency, charge, round_money
from ruche.server.billing.pricing import (
    AllowanceUnit,
    DayPass,
    MonthlyPlan,
    PayAsYouGo,
    Period,
    PlanTerms,
    PriceVersion,
    check_versions,
    segments,
)
from ruche.server.billing.usage import PresenceSpan, Usage, billable_usage
from ruche.server.occupancy.sessions import (
    AttributedSession,
    DeskEvent,
    EventKind,
    derive_desk_sessions,
    merge_intervals,
)

PROPERTIES = settings(max_examples=150, deadline=None)

PARIS = ZoneInfo("Europe/Paris")
EUR = Currency.of("EUR")
OCT, NOV, DEC = Period(2026, 10), Period(2026, 11), Period(2026, 12)
FIRST_DAY = OCT.first_day
WINDOW_START = datetime(2026, 10, 22, tzinfo=UTC)
WINDOW_DAYS = 12  # to 2026-11-03: the fall-back day and the end of October inside
RATES = [Decimal(0), Decimal("0.055"), Decimal("0.1"), Decimal("0.2")]
SITE, MEMBER = "lyon", 7
D = Decimal


# --- strategies --------------------------------------------------------------------------


def _instant(draw: st.DrawFn) -> datetime:
    day = draw(st.integers(0, WINDOW_DAYS - 1))
    minute = draw(st.integers(0, 24 * 60 - 1))
    second = draw(st.integers(0, 59))
    return WINDOW_START + timedelta(days=day, minutes=minute, seconds=second)


@st.composite
def span_lists(draw: st.DrawFn, max_size: int = 10) -> list[PresenceSpan]:
    """Spans clustered in the window (so they overlap), a few of them suspect."""
    spans = []
    for i in range(draw(st.integers(0, max_size))):
        start = _instant(draw)
        length = timedelta(minutes=draw(st.integers(0, 14 * 60)), seconds=draw(st.integers(0, 59)))
        suspect = draw(st.integers(0, 5)) == 0
        spans.append(
            PresenceSpan(
                f"s{i}",
                start,
                start + length,
                suspect=suspect,
                reason="stuck_occupied" if suspect else None,
            )
        )
    return spans


def _money(low: int, high: int, places: int = 2) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(lambda n: D(n).scaleb(-places))


@st.composite
def pay_as_you_go(draw: st.DrawFn) -> PayAsYouGo:
    minimum = draw(_money(0, 1000))
    return PayAsYouGo(
        per_minute=draw(_money(0, 200, places=3)),
        minimum_charge=minimum,
        daily_cap=minimum + draw(_money(0, 5000)),
        monthly_cap=draw(st.none() | _money(0, 20000)),
    )


@st.composite
def monthly(draw: st.DrawFn) -> MonthlyPlan:
    if draw(st.booleans()):
        return MonthlyPlan.days(
            fee=draw(_money(0, 50000)),
            included=draw(st.integers(0, 12)),
            overage_per_day=draw(_money(0, 5000)),
        )
    return MonthlyPlan.hours(
        fee=draw(_money(0, 50000)),
        included=draw(st.integers(0, 60)),
        overage_per_hour=draw(_money(0, 2000, places=3)),
    )


PLANS: st.SearchStrategy[PlanTerms] = st.one_of(
    pay_as_you_go(), monthly(), _money(0, 5000).map(DayPass)
)


@st.composite
def version_lists(
    draw: st.DrawFn, plans: st.SearchStrategy[PlanTerms] = PLANS
) -> list[PriceVersion]:
    """One version in force from before the window, and up to two changes in Oct or Nov."""
    changes = sorted(draw(st.sets(st.integers(0, 60), max_size=2)))
    starts = [date(2026, 9, 1)] + [FIRST_DAY + timedelta(days=d) for d in changes]
    return [
        PriceVersion(f"v{i}", start, draw(plans), EUR, draw(st.sampled_from(RATES)))
        for i, start in enumerate(starts)
    ]


GRACES = st.sampled_from([timedelta(0), timedelta(minutes=10), timedelta(minutes=45)])


# --- helpers -----------------------------------------------------------------------------


def usage_of(spans: Iterable[PresenceSpan], grace: timedelta, period: Period) -> Usage:
    return billable_usage(
        spans, tz=PARIS, join_gap=grace, first_day=FIRST_DAY, last_day=period.last_day
    )


def close(
    spans: Iterable[PresenceSpan],
    versions: Sequence[PriceVersion],
    period: Period,
    grace: timedelta = timedelta(0),
    billed: Iterable[Billed] = (),
) -> Invoice:
    return compute_invoice(
        member=MEMBER,
        site=SITE,
        period=period,
        usage=usage_of(spans, grace, period),
        versions=versions,
        billed=billed,
    )


def totals(invoice: Invoice) -> tuple[Decimal, Decimal, Decimal]:
    return invoice.subtotal, invoice.tax, invoice.total


def union_length(intervals: Iterable[tuple[datetime, datetime]]) -> timedelta:
    """The measure of a union of intervals, by a sweep independent of merge_intervals."""
    total, reach = timedelta(0), None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def split(spans: list[PresenceSpan], rng: random.Random) -> list[PresenceSpan]:
    """Each span cut in two at a random instant inside it."""
    out = []
    for span in spans:
        assert span.end is not None
        length = span.end - span.start
        if length <= timedelta(microseconds=1):
            out.append(span)
            continue
        cut = span.start + timedelta(
            microseconds=rng.randrange(1, length // timedelta(microseconds=1))
        )
        out.append(PresenceSpan(span.id + "a", span.start, cut, span.suspect, span.reason))
        out.append(PresenceSpan(span.id + "b", cut, span.end, span.suspect, span.reason))
    return out


def merged(spans: list[PresenceSpan]) -> list[PresenceSpan]:
    """The billable spans replaced by their union, one span per merged interval."""
    kept = [s for s in spans if s.suspect]
    union = merge_intervals(
        ((s.start, s.end) for s in spans if not s.suspect and s.end is not None),
        join_gap=timedelta(0),
    )
    return kept + [PresenceSpan(f"m{i}", start, end) for i, (start, end) in enumerate(union)]


# --- properties --------------------------------------------------------------------------


class TestBilledTime:
    """Billed time never exceeds merged presence time; plans count exactly the time used."""

    @PROPERTIES
    @given(spans=span_lists(), grace=GRACES)
    def test_minutes_within_presence(self, spans: list[PresenceSpan], grace: timedelta) -> None:
        usage = usage_of(spans, grace, NOV)
        billable = [(s.start, s.end) for s in spans if not s.suspect and s.end is not None]
        with_grace = merge_intervals(billable, join_gap=grace)
        presence = sum((d.presence for d in usage.days), timedelta(0))
        assert presence == union_length(with_grace)
        assert sum(d.minutes for d in usage.days) * timedelta(minutes=1) <= presence
        if grace == timedelta(0):
            assert presence == union_length(billable)
        for day in usage.days:
            assert (
                day.minutes * timedelta(minutes=1)
                <= day.presence
                < (day.minutes + 1) * timedelta(minutes=1)
            )
            assert day.presence <= timedelta(hours=25)

    @PROPERTIES
    @given(spans=span_lists(), grace=GRACES, versions=version_lists(monthly()))
    def test_hours_billed_are_the_minutes_used(
        self, spans: list[PresenceSpan], grace: timedelta, versions: list[PriceVersion]
    ) -> None:
        for period in (OCT, NOV):
            invoice = close(spans, versions, period, grace)
            usage = usage_of(spans, grace, period)
            used = [d for d in usage.between(period.first_day, period.last_day) if d.used]
            for seg in segments(check_versions(versions), period):
                plan = seg.version.terms
                assert isinstance(plan, MonthlyPlan)
                days = [d for d in used if d.day in seg.days]
                counted = sum(
                    line.quantity
                    for line in invoice.lines
                    if not line.adjustment
                    and line.version == seg.version.id
                    and line.key.startswith(("included:", "overage:"))
                )
                if plan.unit is AllowanceUnit.HOUR:
                    assert counted == sum(d.minutes for d in days)
                else:
                    assert counted == len(days)


class TestCaps:
    """The daily minimum and cap always hold, and so does the monthly cap."""

    @PROPERTIES
    @given(spans=span_lists(), grace=GRACES, versions=version_lists(pay_as_you_go()))
    def test_minimum_and_caps(
        self, spans: list[PresenceSpan], grace: timedelta, versions: list[PriceVersion]
    ) -> None:
        by_id = {v.id: v for v in versions}
        billed: list[Billed] = []
        for period in (OCT, NOV):
            invoice = close(spans, versions, period, grace, billed)
            billed.extend(invoice.billed())
            assert not any(line.adjustment for line in invoice.lines)
            for line in invoice.lines:
                plan = by_id[line.version].terms
                assert isinstance(plan, PayAsYouGo)
                if line.key.startswith("payg:"):
                    assert round_money(plan.minimum_charge, EUR) <= line.net
                    assert line.net <= round_money(plan.daily_cap, EUR)
            for seg in segments(check_versions(versions), period):
                plan = seg.version.terms
                assert isinstance(plan, PayAsYouGo)
                spent = sum(
                    (line.net for line in invoice.lines if line.version == seg.version.id),
                    D(0),
                )
                assert spent >= 0
                if plan.monthly_cap is not None:
                    in_force, month = seg.share
                    assert spent <= charge(in_force, plan.monthly_cap, EUR, per=month)


class TestSameTotal:
    """Splitting or merging sessions, reordering and replaying never change the total."""

    @PROPERTIES
    @given(
        spans=span_lists(),
        grace=GRACES,
        versions=version_lists(),
        seed=st.integers(0, 2**32),
    )
    def test_split_merge_shuffle_replay(
        self,
        spans: list[PresenceSpan],
        grace: timedelta,
        versions: list[PriceVersion],
        seed: int,
    ) -> None:
        rng = random.Random(seed)
        shuffled = [*spans, *rng.sample(spans, k=len(spans) // 2)]
        rng.shuffle(shuffled)
        for period in (OCT, NOV):
            expected = close(spans, versions, period, grace)
            replayed = close(shuffled, list(reversed(versions)), period, grace)
            assert replayed.to_json() == expected.to_json()
            assert totals(close(split(spans, rng), versions, period, grace)) == totals(expected)
            assert totals(close(merged(spans), versions, period, grace)) == totals(expected)

    @PROPERTIES
    @given(
        raw=st.lists(
            st.tuples(
                st.sampled_from(["desk-1", "desk-2"]),
                st.integers(0, 3 * 24 * 60),
                st.sampled_from(list(EventKind)[:4]),
            ),
            max_size=30,
        ),
        versions=version_lists(),
        seed=st.integers(0, 2**32),
    )
    def test_events_reordered_and_replayed(
        self,
        raw: list[tuple[str, int, EventKind]],
        versions: list[PriceVersion],
        seed: int,
    ) -> None:
        events = [
            DeskEvent(
                (SITE, "pi-1", desk),
                seq,
                datetime(2026, 10, 30, tzinfo=UTC) + timedelta(minutes=m),
                kind,
            )
            for seq, (desk, m, kind) in enumerate(raw, start=1)
        ]
        rng = random.Random(seed)
        replayed = [*events, *rng.choices(events, k=len(events))] if events else []
        rng.shuffle(replayed)

        def invoices(evts: list[DeskEvent]) -> list[str]:
            sessions = derive_desk_sessions(
                evts,
                now=datetime(2026, 11, 5, tzinfo=UTC),
                stale_after=timedelta(minutes=15),
                stuck_after=timedelta(hours=12),
            )
            spans = [
                PresenceSpan.of_session(AttributedSession(s, MEMBER, "badge")) for s in sessions
            ]
            return [close(spans, versions, p, timedelta(minutes=10)).to_json() for p in (OCT, NOV)]

        assert invoices(replayed) == invoices(events)


class TestTotals:
    """Lines sum to the invoice total exactly, and a close reproduces the same bytes."""

    @PROPERTIES
    @given(
        before=span_lists(),
        after=span_lists(),
        grace=GRACES,
        versions=version_lists(),
        seed=st.integers(0, 2**32),
    )
    def test_lines_sum_and_close_is_reproducible(
        self,
        before: list[PresenceSpan],
        after: list[PresenceSpan],
        grace: timedelta,
        versions: list[PriceVersion],
        seed: int,
    ) -> None:
        october = close(before, versions, OCT, grace)
        billed = list(october.billed())
        november = close(after, versions, NOV, grace, billed)
        for invoice in (october, november):
            for line in invoice.lines:
                assert line.net == charge(line.quantity, line.unit_price, EUR, per=line.per)
                assert line.net == round_money(line.net, EUR)
            assert sum((line.net for line in invoice.lines), D(0)) == invoice.subtotal
            assert sum((t.base for t in invoice.taxes), D(0)) == invoice.subtotal
            assert sum((t.tax for t in invoice.taxes), D(0)) == invoice.tax
            assert invoice.subtotal + invoice.tax == invoice.total

        rng = random.Random(seed)
        rng.shuffle(billed)
        again = close(list(reversed(after)), list(reversed(versions)), NOV, grace, billed)
        assert again.to_json() == november.to_json()
        assert again.key == november.key


class TestAdjustments:
    """Late changes to a closed month are billed exactly once, as the difference."""

    @PROPERTIES
    @given(
        before=span_lists(),
        after=span_lists(),
        grace=GRACES,
        versions=version_lists(),
    )
    def test_closed_month_settles_to_its_repricing(
        self,
        before: list[PresenceSpan],
        after: list[PresenceSpan],
        grace: timedelta,
        versions: list[PriceVersion],
    ) -> None:
        october = close(before, versions, OCT, grace)
        november = close(after, versions, NOV, grace, october.billed())
        repriced = close(after, versions, OCT, grace)
        billed_for_october = sum(
            (line.net for inv in (october, november) for line in inv.lines if line.period == OCT),
            D(0),
        )
        assert billed_for_october == repriced.subtotal
        assert all(line.adjustment == (line.period == OCT) for line in november.lines)

        december = close(after, versions, DEC, grace, [*october.billed(), *november.billed()])
        assert not any(line.adjustment for line in december.lines)
