"""What a member's billed days rest on: per local day, the minutes billing counts and the
rows behind them (the badge-in at a door that opened a visit, the desk a sensor saw
occupied), as a member reads them on their usage page.

```python
evidence = usage_evidence(session, site, member_id, Period(2026, 11))
for day in evidence.days:
    print(day.day, day.minutes, [(s.kind, s.place, s.start, s.end) for s in day.spans])
```

The minutes are `member_usage`'s, computed by the pure rules of `billing.usage` (spans
merged, short gaps joined, cut at the site's midnights, rounded down); this module only
puts the visits and desk sessions they name beside them, with the door of the tap that
opened each visit when its event is stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.server.billing.pricing import Period
from ruche.server.billing.spans import (
    JOIN_GAP,
    desk_span_id,
    member_rows,
    member_usage,
    period_span,
    visit_span_id,
)
from ruche.server.billing.usage import HeldBack
from ruche.server.storage.models import (
    DeskSessionRow,
    DoorRow,
    SiteRow,
    StoredEventRow,
    VisitRow,
)

__all__ = ["DayEvidence", "SpanEvidence", "SpanKind", "UsageEvidence", "usage_evidence"]


class SpanKind(StrEnum):
    VISIT = "visit"
    """A stay at the site, opened by an allowed badge-in at a door."""
    DESK = "desk"
    """A desk a sensor saw occupied, attributed to the member."""


@dataclass(frozen=True, slots=True)
class SpanEvidence:
    """One visit or desk session, as billing names it (`id`) and as a person reads it."""

    id: str
    kind: SpanKind
    start: datetime
    end: datetime | None
    place: str
    """The door of the badge-in (its name, else its id) for a visit; the desk's id."""
    closed_by: str
    """How it ended: `exit`, `desk_session`, `next_entry`, `max_visit`, `vacant`,
    `quiet`, `open`."""
    attributed_by: str | None
    """For a desk: `badge` or `booking`, what made it the member's."""
    held_back: str | None
    """Why billing leaves it out for now (`open`, `stuck_occupied`), else None."""


@dataclass(frozen=True, slots=True)
class DayEvidence:
    """A local day with billable time: its minutes and the spans behind them."""

    day: date
    minutes: int
    first_presence: datetime
    spans: tuple[SpanEvidence, ...]


@dataclass(frozen=True, slots=True)
class UsageEvidence:
    """A member's month at one site: the days billing counts, and what it holds back."""

    site: str
    site_name: str
    timezone: str
    period: Period
    days: tuple[DayEvidence, ...]
    held_back: tuple[SpanEvidence, ...]

    @property
    def minutes(self) -> int:
        return sum(day.minutes for day in self.days)

    @property
    def used_days(self) -> int:
        return sum(1 for day in self.days if day.minutes > 0)


def usage_evidence(
    session: Session, site: SiteRow, member_id: int, period: Period
) -> UsageEvidence:
    """The member's billable days of `period` at `site`, each with the rows behind it."""
    usage = member_usage(session, site, member_id, period.first_day, period.last_day)
    start, end = period_span(site, period.first_day, period.last_day)
    visits, desks = member_rows(session, site, member_id, start - JOIN_GAP, end + JOIN_GAP)
    held = {h.id: h for h in usage.held_back}
    doors = _entry_doors(session, site, visits)
    spans = {
        **{visit_span_id(v): _visit(v, doors, held) for v in visits},
        **{desk_span_id(d): _desk(d, held) for d in desks},
    }
    days = tuple(
        DayEvidence(
            day=d.day,
            minutes=d.minutes,
            first_presence=d.first_presence,
            spans=_ordered(spans[i] for i in d.spans if i in spans),
        )
        for d in usage.days
    )
    return UsageEvidence(
        site=site.slug,
        site_name=site.name,
        timezone=site.timezone,
        period=period,
        days=days,
        held_back=_ordered(spans[h.id] for h in usage.held_back if h.id in spans),
    )


def _ordered(spans: Iterable[SpanEvidence]) -> tuple[SpanEvidence, ...]:
    return tuple(sorted(spans, key=lambda s: (s.start, s.id)))


def _visit(
    row: VisitRow, doors: dict[tuple[str, int], str], held: dict[str, HeldBack]
) -> SpanEvidence:
    span = visit_span_id(row)
    return SpanEvidence(
        id=span,
        kind=SpanKind.VISIT,
        start=row.start,
        end=row.end,
        place=doors.get((row.entry_agent, row.entry_seq), ""),
        closed_by=row.closed_by,
        attributed_by=None,
        held_back=held[span].reason if span in held else None,
    )


def _desk(row: DeskSessionRow, held: dict[str, HeldBack]) -> SpanEvidence:
    span = desk_span_id(row)
    return SpanEvidence(
        id=span,
        kind=SpanKind.DESK,
        start=row.start,
        end=row.end,
        place=row.desk,
        closed_by=row.closed_by,
        attributed_by=row.attributed_by,
        held_back=held[span].reason if span in held else None,
    )


def _entry_doors(
    session: Session, site: SiteRow, visits: Sequence[VisitRow]
) -> dict[tuple[str, int], str]:
    """The door each visit's first badge-in was at, by `(agent, seq)`: its name, else its
    id. A visit whose tap event is not stored (an import, a purge) has none."""
    if not visits:
        return {}
    agents = {v.entry_agent for v in visits}
    seqs = {v.entry_seq for v in visits}
    taps = session.execute(
        select(StoredEventRow.agent, StoredEventRow.seq, StoredEventRow.device).where(
            StoredEventRow.site == site.slug,
            StoredEventRow.agent.in_(agents),
            StoredEventRow.seq.in_(seqs),
        )
    ).all()
    names = dict(
        session.execute(select(DoorRow.slug, DoorRow.name).where(DoorRow.site_id == site.id)).all()
    )
    wanted = {(v.entry_agent, v.entry_seq) for v in visits}
    return {
        (agent, seq): names.get(door) or door for agent, seq, door in taps if (agent, seq) in wanted
    }
