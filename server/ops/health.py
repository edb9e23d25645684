"""The server's health, as values: readiness verdicts, agents' last status, health points.

Pure: no I/O and no clock reads. The probes that feed these (SQL, MQTT, an InfluxDB
ping) live in `routes_health`, the collectors and the reporter thread in `metrics`.

    readiness({"database": "ok", "influxdb": influx_state(ping_error="connection refused",
               up=False, last_error=None, spooled_points=12)}).ready      # False

The InfluxDB measurements written here (`server_stats`, `agent_status`) are documented
in docs/operations.md; the Grafana dashboards read them by these exact names.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ruche.broker import Status
from ruche.server.timeseries.lineprotocol import FieldValue, Point

OK = "ok"
"""The state of a dependency that is fine; any other state names what is wrong."""

SERVER_STATS = "server_stats"
AGENT_STATUS = "agent_status"


# --- readiness ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Readiness:
    """Each dependency's state by name: `ok`, or `down: why`."""

    checks: Mapping[str, str]

    @property
    def ready(self) -> bool:
        return all(state == OK for state in self.checks.values())

    def as_json(self) -> dict[str, object]:
        return {"ready": self.ready, "checks": dict(self.checks)}


def readiness(checks: Mapping[str, str]) -> Readiness:
    return Readiness(dict(checks))


def database_state(error: str | None) -> str:
    return OK if error is None else f"down: {error}"


def mqtt_state(connected: Mapping[str, bool]) -> str:
    """`ok` when every worker's connection is up, else which ones are not."""
    down = sorted(name for name, up in connected.items() if not up)
    return OK if not down else f"down: {', '.join(down)} not connected to the broker"


def influx_state(
    *,
    ping_error: str | None,
    up: bool,
    last_error: str | None,
    spooled_points: int,
    refusing: bool = False,
) -> str:
    """InfluxDB is ready when it answers a ping and the writer's last attempt reached it
    and was taken.

    Right after InfluxDB comes back the ping answers before the writer's next retry: the
    state stays `failing` until that retry lands, so `ok` means points flow again. An
    InfluxDB that answers but refuses the writes (`refusing`: a token, a permission, a
    database or a 2.x DBRP mapping missing) is failing too: nothing flows until fixed.
    """
    spool = f"spool holds {spooled_points} points"
    if ping_error is not None:
        return f"down: {ping_error} ({spool})"
    if (not up or refusing) and last_error is not None:
        return f"failing: {last_error} ({spool})"
    return OK


def first_line(error: BaseException | str, limit: int = 200) -> str:
    """An error as one short line, for a state: drivers add hints on further lines."""
    text = str(error).strip().splitlines()
    line = text[0] if text else type(error).__name__
    return line if len(line) <= limit else f"{line[: limit - 3]}..."


# --- agents ------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentState:
    """An agent as its last `status` message described it."""

    online: bool
    outbox_depth: int
    faults: int
    """How many of its devices it reports at fault."""
    config_version: int | None = None
    """The server config it runs; None when it runs its file's (or is offline)."""
    config_refused: bool = False
    """It refused the latest config it was sent (the previous one runs)."""


def agent_state(status: Status) -> AgentState:
    online = status.state == "online"
    return AgentState(
        online=online,
        outbox_depth=status.outbox_depth if online else 0,
        faults=len(status.faults) if online else 0,
        config_version=status.config_version if online else None,
        config_refused=online and status.config_refused is not None,
    )


class AgentBoard:
    """Every agent's last known state, by (site, agent); safe to share between threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[tuple[str, str], AgentState] = {}

    def record(self, site: str, agent: str, status: Status) -> AgentState:
        state = agent_state(status)
        with self._lock:
            self._states[(site, agent)] = state
        return state

    def states(self) -> dict[tuple[str, str], AgentState]:
        with self._lock:
            return dict(self._states)

    def online_by_site(self) -> dict[str, int]:
        """Agents online per site; a site whose agents are all offline counts 0."""
        counts: dict[str, int] = {}
        for (site, _agent), state in self.states().items():
            counts[site] = counts.get(site, 0) + (1 if state.online else 0)
        return counts


def agent_status_point(site: str, agent: str, state: AgentState, *, time_ns: int) -> Point:
    fields: dict[str, FieldValue] = {
        "online": 1 if state.online else 0,
        "outbox_depth": state.outbox_depth,
        "faults": state.faults,
    }
    return Point(AGENT_STATUS, {"site": site, "agent": agent}, fields, time_ns)


# --- server_stats ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class StatsSnapshot:
    """One process's figures for a `server_stats` point: counters since the process
    started, lag percentiles over the events stored since the previous snapshot."""

    received: int = 0
    stored: int = 0
    duplicates: int = 0
    bad: int = 0
    lag_ms_p50: float | None = None
    lag_ms_p99: float | None = None
    spool_points: int = 0
    influx_write_errors: int = 0
    points_written: int = 0
    decisions: int = 0


def server_stats_point(snapshot: StatsSnapshot, *, host: str, process: str, time_ns: int) -> Point:
    """The `server_stats` point; lag fields are left out when no event was stored since
    the last one (a zero would read as instant storage)."""
    fields: dict[str, FieldValue] = {
        "received": snapshot.received,
        "stored": snapshot.stored,
        "duplicates": snapshot.duplicates,
        "bad": snapshot.bad,
        "spool_points": snapshot.spool_points,
        "influx_write_errors": snapshot.influx_write_errors,
        "points_written": snapshot.points_written,
        "decisions": snapshot.decisions,
    }
    if snapshot.lag_ms_p50 is not None:
        fields["lag_ms_p50"] = float(snapshot.lag_ms_p50)
    if snapshot.lag_ms_p99 is not None:
        fields["lag_ms_p99"] = float(snapshot.lag_ms_p99)
    return Point(SERVER_STATS, {"host": host, "process": process}, fields, time_ns)


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q` quantile (0 < q <= 1) of `values`; None when there are none."""
    if not 0 < q <= 1:
        raise ValueError(f"a quantile is in (0, 1], not {q}")
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]
