"""What Grafana does to a raw InfluxQL query before sending it: pure, for the tests and
for anyone running a panel's query by hand.

    >>> from datetime import UTC, datetime, timedelta
    >>> start = datetime(2026, 11, 24, 8, tzinfo=UTC)
    >>> expand("WHERE site = '$site' AND $timeFilter GROUP BY time($__interval)",
    ...        start=start, end=start + timedelta(hours=1), interval=timedelta(minutes=5),
    ...        variables={"site": "lyon"})
    "WHERE site = 'lyon' AND time >= 1795507200000ms and time <= 1795510800000ms GROUP BY time(5m)"

Grafana's InfluxDB data source writes `$timeFilter` as the range in epoch milliseconds,
`$__interval` as a duration it computes from the range and the panel's width (never
below the panel's `interval`), a single-valued variable as is, and a multi-valued one
as a regular expression group `(a|b)` with each value's special characters escaped.
`auto_interval` approximates the interval for a panel about 1000 points wide.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

_UNITS = {"ms": timedelta(milliseconds=1), "s": timedelta(seconds=1), "m": timedelta(minutes=1),
          "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}  # fmt: skip
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_REFERENCE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
_REGEX_SPECIAL = re.compile(r"([\\/^$*+?.()|\[\]{}])")
# Grafana rounds its computed interval to one of these (a subset of its own table).
_STEPS = tuple(
    timedelta(seconds=s)
    for s in (1, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
              43200, 86400, 604800)
)  # fmt: skip


class MacroError(ValueError):
    """A query names a variable or macro nobody gave a value for, or a duration is bad."""


def parse_duration(text: str) -> timedelta:
    """`"15m"`, `"1h"`, `"500ms"`: a Grafana or InfluxQL duration (a leading `now-` is
    dropped, so a dashboard's `time.from` parses too)."""
    body = text.removeprefix("now-")
    match = _DURATION.fullmatch(body)
    if match is None:
        raise MacroError(f"{text!r} is not a duration like 15m, 1h or 7d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def format_duration(span: timedelta) -> str:
    """The shortest InfluxQL duration literal for `span` (`timedelta(minutes=10)` is `10m`)."""
    if span <= timedelta(0):
        raise MacroError(f"a duration must be positive, not {span}")
    micros = span // timedelta(microseconds=1)
    for unit in ("w", "d", "h", "m", "s", "ms"):
        size = _UNITS[unit] // timedelta(microseconds=1)
        if micros % size == 0:
            return f"{micros // size}{unit}"
    raise MacroError(f"{span} is not a whole number of milliseconds")


def auto_interval(
    start: datetime, end: datetime, *, minimum: str | None = None, points: int = 1000
) -> timedelta:
    """About Grafana's `$__interval` for a range drawn `points` wide: rounded up to a
    round step, and never below the panel's `minimum`."""
    if end <= start:
        raise MacroError(f"the range ends ({end}) before it starts ({start})")
    raw = (end - start) / points
    step = next((s for s in _STEPS if s >= raw), _STEPS[-1])
    if minimum is not None:
        step = max(step, parse_duration(minimum))
    return step


def _epoch_ms(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise MacroError(f"{moment} has no timezone: give an aware datetime")
    return int(moment.timestamp() * 1000)


def regex_value(values: Sequence[str]) -> str:
    """A multi-valued variable as Grafana writes it for InfluxQL: `(a|b)`, escaped."""
    escaped = [_REGEX_SPECIAL.sub(r"\\\1", v) for v in values]
    if not escaped:
        raise MacroError("a multi-valued variable needs at least one value")
    return escaped[0] if len(escaped) == 1 else f"({'|'.join(escaped)})"


def expand(
    query: str,
    *,
    start: datetime,
    end: datetime,
    interval: timedelta,
    variables: Mapping[str, str | Sequence[str]],
) -> str:
    """`query` with Grafana's macros and the dashboard's variables filled in.

    A string is a single value, written as is; a sequence is a multi-value selection.
    A `$name` nobody gave raises MacroError, so a misspelt variable fails loudly.
    """
    start_ms, end_ms = _epoch_ms(start), _epoch_ms(end)
    builtins = {
        "timeFilter": f"time >= {start_ms}ms and time <= {end_ms}ms",
        "__interval": format_duration(interval),
        "__interval_ms": str(interval // timedelta(milliseconds=1)),
        "__from": str(start_ms),
        "__to": str(end_ms),
    }

    def value_of(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in builtins:
            return builtins[name]
        if name not in variables:
            raise MacroError(f"the query uses ${name}, which has no value: {query}")
        value = variables[name]
        return value if isinstance(value, str) else regex_value(value)

    return _REFERENCE.sub(value_of, query)
