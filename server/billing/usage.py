"""A member's billable time per local day at a site: pure rules over presence spans.

The shell gives a member's door visits and attributed desk sessions at one site, as
`PresenceSpan`s, and the days to report; `billable_usage` returns, per local day of the
site, the merged billable time and the spans behind it, and the spans held back.

    >>> from zoneinfo import ZoneInfo
    >>> paris = ZoneInfo("Europe/Paris")
    >>> at = lambda d, h, m=0: datetime(2026, 11, d, h, m, tzinfo=paris)
    >>> usage = billable_usage(
    ...     [PresenceSpan("visit-1", at(20, 22), at(21, 2)),
    ...      PresenceSpan("desk-1", at(21, 1), at(21, 1, 30))],
    ...     tz=paris, join_gap=timedelta(minutes=15),
    ...     first_day=date(2026, 11, 1), last_day=date(2026, 11, 30))
    >>> [(d.day.isoformat(), d.minutes, d.spans) for d in usage.days]
    [('2026-11-20', 120, ('visit-1',)), ('2026-11-21', 120, ('desk-1', 'visit-1'))]

## Rules

- **Held back.** A span flagged `suspect` (a desk sensor stuck occupied, say) is not
  billed: it is listed in `held_back` with its reason, for a person to review. The shell
  passes it again unflagged once approved (or drops it), and the change reaches the
  next invoice as an adjustment. A span still open (`end=None`) is held back as `open`
  until it closes.
- **Merged.** The other spans are merged into their union, so a desk session inside a
  visit, or two overlapping sessions, never bill the same minute twice. A gap between
  two spans *shorter than* `join_gap` is joined and billed as presence (a coffee break
  keeps the member's place: it is not two visits).
- **Local days.** The merged time is cut at the site's local midnights: a session from
  22:00 to 02:00 bills two hours on each day, and a DST day holds 23 or 25 hours.
- **Minutes.** A day's billable minutes are its merged time in whole minutes, rounded
  down, so billed time never exceeds presence. A day *counts as used* (for allowances,
  minimum charges and day passes) when it holds at least one billable minute.
- **Sets, not lists.** Spans are deduplicated by id and sorted, so order and replays
  never change the result; two different spans under one id are refused.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from ruche.server.errors import Invalid
from ruche.server.occupancy.sessions import (
    AttributedSession,
    Visit,
    clip_to_local_days,
    merge_intervals,
)

__all__ = [
    "DayUsage",
    "HeldBack",
    "PresenceSpan",
    "Usage",
    "billable_usage",
]

OPEN = "open"
SUSPECT = "suspect"
_ZERO = timedelta(0)
_MINUTE = timedelta(minutes=1)


def _aware(value: datetime, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise Invalid(f"{name} must be a timezone-aware datetime, not {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class PresenceSpan:
    """A member's presence at a site, `[start, end)`: a door visit or an attributed desk session.

    `id` is stable across recomputations and names the span on invoice lines.
    """

    id: str
    start: datetime
    end: datetime | None
    suspect: bool = False
    reason: str | None = None
    """Why it is suspect (`stuck_occupied`); None when it is not."""

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise Invalid(f"a presence span needs a non-empty id, not {self.id!r}")
        object.__setattr__(self, "start", _aware(self.start, f"span {self.id} start"))
        if self.end is not None:
            object.__setattr__(self, "end", _aware(self.end, f"span {self.id} end"))
            if self.end < self.start:
                raise Invalid(f"span {self.id} ends ({self.end}) before it starts ({self.start})")

    @classmethod
    def of_visit(cls, visit: Visit) -> PresenceSpan:
        """A door visit, named by its first entry tap: `visit:{site}/{agent}#{seq}`."""
        if visit.entry_seqs:
            agent, seq = visit.entry_seqs[0]
            name = f"visit:{visit.site}/{agent}#{seq}"
        else:
            name = f"visit:{visit.site}/{visit.member}@{visit.start.isoformat()}"
        return cls(name, visit.start, visit.end)

    @classmethod
    def of_session(cls, attributed: AttributedSession) -> PresenceSpan:
        """A desk session, named by desk and opening event: `desk:{site}/{agent}/{desk}#{seq}`."""
        session = attributed.session
        site, agent, desk = session.desk
        return cls(
            f"desk:{site}/{agent}/{desk}#{session.opened_seq}",
            session.start,
            session.end,
            suspect=session.suspect,
            reason=session.reason,
        )


@dataclass(frozen=True, slots=True)
class DayUsage:
    """One local day of a member's billable presence."""

    day: date
    presence: timedelta
    """Merged billable time within the day (joined gaps included)."""
    minutes: int
    """`presence` in whole minutes, rounded down."""
    first_presence: datetime
    """The first billable instant of the day, in UTC: when a day pass is consumed."""
    spans: tuple[str, ...]
    """The ids of the spans with billable time on this day, sorted."""

    @property
    def used(self) -> bool:
        """Whether the day counts: at least one billable minute."""
        return self.minutes > 0


@dataclass(frozen=True, slots=True)
class HeldBack:
    """A span not billed until reviewed (suspect) or closed (open)."""

    id: str
    reason: str
    start: datetime
    end: datetime | None
    days: tuple[date, ...]
    """The local days it touches (its first day while open)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """A member's billable usage at one site over the local days `first_day..last_day`."""

    timezone: str
    first_day: date
    last_day: date
    days: tuple[DayUsage, ...]
    """Days with billable presence, in date order."""
    held_back: tuple[HeldBack, ...]
    """Spans touching the days that are not billed, by start then id."""

    def covers(self, first: date, last: date) -> bool:
        """Whether every day from `first` to `last` is within this usage."""
        return self.first_day <= first and last <= self.last_day

    def between(self, first: date, last: date) -> tuple[DayUsage, ...]:
        return tuple(d for d in self.days if first <= d.day <= last)


def billable_usage(
    spans: Iterable[PresenceSpan],
    *,
    tz: ZoneInfo,
    join_gap: timedelta,
    first_day: date,
    last_day: date,
) -> Usage:
    """Billable presence per local day from `first_day` to `last_day`, by the module's rules.

    Pass every span that touches those days (and those just around them, so a gap
    joined across the edge is seen): the days in between are then complete.
    """
    if not isinstance(tz, ZoneInfo):
        raise Invalid(f"tz must be a ZoneInfo (the site's timezone), not {tz!r}")
    if not isinstance(join_gap, timedelta) or join_gap < _ZERO:
        raise Invalid(f"join_gap must be a duration of zero or more, not {join_gap!r}")
    if last_day < first_day:
        raise Invalid(f"last_day ({last_day}) is before first_day ({first_day})")
    unique = _dedupe(spans)
    held: list[HeldBack] = []
    billable: list[PresenceSpan] = []
    for span in unique:
        start_day = span.start.astimezone(tz).date()
        if span.end is None:
            held.append(HeldBack(span.id, OPEN, span.start, None, (start_day,)))
        elif span.suspect:
            touched = tuple(d for d, _, _ in clip_to_local_days((span.start, span.end), tz))
            held.append(
                HeldBack(
                    span.id, span.reason or SUSPECT, span.start, span.end, touched or (start_day,)
                )
            )
        else:
            billable.append(span)

    presence: dict[date, timedelta] = defaultdict(timedelta)
    first: dict[date, datetime] = {}
    merged = merge_intervals(
        ((s.start, s.end) for s in billable if s.end is not None), join_gap=join_gap
    )
    for interval in merged:
        for day, start, end in clip_to_local_days(interval, tz):
            presence[day] += end - start
            first[day] = min(first.get(day, start), start)
    behind: dict[date, set[str]] = defaultdict(set)
    for span in billable:
        if span.end is not None:
            for day, _, _ in clip_to_local_days((span.start, span.end), tz):
                behind[day].add(span.id)

    usage = tuple(
        DayUsage(
            day=day,
            presence=presence[day],
            minutes=presence[day] // _MINUTE,
            first_presence=first[day],
            spans=tuple(sorted(behind[day])),
        )
        for day in sorted(presence)
        if first_day <= day <= last_day
    )
    kept = tuple(h for h in held if any(first_day <= d <= last_day for d in h.days))
    return Usage(tz.key, first_day, last_day, usage, kept)


def _dedupe(spans: Iterable[PresenceSpan]) -> list[PresenceSpan]:
    """One span per id, in `(start, id)` order; a replay is the same span, a clash is refused."""
    by_id: dict[str, PresenceSpan] = {}
    for span in spans:
        if not isinstance(span, PresenceSpan):
            raise Invalid(f"usage is computed from PresenceSpans, not {span!r}")
        other = by_id.setdefault(span.id, span)
        if other != span:
            raise Invalid(
                f"two different spans share the id {span.id!r}: ids must name one interval "
                "(pass the latest derivation of each session and visit only)"
            )
    return sorted(by_id.values(), key=lambda s: (s.start, s.id))
