"""One process's metrics: Prometheus collectors over its workers' stats, and health points.

```python
metrics = ProcessMetrics(process="main")
metrics.watch_ingest(ingest.stats)          # read at scrape time, nothing incremented twice
metrics.watch_doors(doors.stats)
metrics.watch_influx(writer)
doors.on_decision = metrics.observe_decision
body = metrics.exposition()                 # the text `/metrics` serves
reporter = StatsReporter(metrics, writer, host="srv1")
reporter.start()                            # a `server_stats` point now, every 10 s, at stop
```

Each `ProcessMetrics` has its own `CollectorRegistry`, not prometheus-client's global
one, so a test can build several apps in one process. Where a worker already counts
(`IngestStats`, `DoorStats`, `InfluxWriter.stats()`), a custom collector reads its
counters when scraped; only what nothing counted yet is observed here: door decisions
by result and reason with their latency, ingestion lag, and agents' statuses.

Metric names and meanings are listed in docs/operations.md.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector

from ruche.broker import Message, Status
from ruche.server.access.door_events import DoorEventStats
from ruche.server.access.taps import DecisionRecord, DoorStats
from ruche.server.occupancy.ingest import IngestStats
from ruche.server.occupancy.live import LiveHub
from ruche.server.ops.health import (
    AgentBoard,
    StatsSnapshot,
    agent_status_point,
    percentile,
    server_stats_point,
)
from ruche.server.ops.prometheus_batch import observe_many
from ruche.server.timeseries.influx import SEGMENT_SUFFIX, InfluxWriter, InfluxWriterStats
from ruche.server.timeseries.lineprotocol import Point
from ruche.server.timeseries.points import time_ns
from ruche.stoppable import StoppableThread

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus's classic text exposition format, which every Prometheus version reads."""
STATS_INTERVAL_S = 10.0
"""How often each process writes its `server_stats` point."""
LAG_WINDOW = 8192
"""Lags kept for a `server_stats` point's percentiles: the last ones of the interval."""

DECISION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
# Lag spans a healthy few milliseconds to an agent's outbox replayed after hours offline.
LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
               300.0, 900.0, 3600.0, 21600.0)  # fmt: skip


class RefusedBodies(Protocol):
    """The API's request-body refusals by reason (`ruche.server.api.app`'s `BodyLimitStats`)."""

    refused: dict[str, int]


class _Children(Protocol):
    """`run.IngestChildren` as the metrics read it."""

    restarts: int

    def running(self) -> Mapping[str, bool]: ...


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _by_label(
    family: CounterMetricFamily | GaugeMetricFamily, values: Mapping[str, int]
) -> CounterMetricFamily | GaugeMetricFamily:
    for label, value in sorted(dict(values).items()):  # a copy: workers add reasons meanwhile
        family.add_metric([label], value)
    return family


@dataclass(frozen=True)
class _Counted:
    """One counter a stats object keeps, as a metric."""

    name: str
    attribute: str
    doc: str


_INGEST = (
    _Counted("ruche_ingest_received", "received",
             "Agent event messages taken off the broker, valid or not."),
    _Counted("ruche_ingest_stored", "stored", "Events newly stored in SQL."),
    _Counted("ruche_ingest_duplicates", "duplicates",
             "Events already stored (redeliveries, outbox resends): deduplication hits."),
    _Counted("ruche_ingest_batches", "batches", "Batches committed."),
    _Counted("ruche_ingest_commit_failures", "commit_failures",
             "Batch commits that failed and were retried (the database was down or busy)."),
    _Counted("ruche_ingest_acks_sent", "acks_sent", "Acks published to agents."),
    _Counted("ruche_ingest_refused", "refused",
             "Valid events refused for a desk or door the registry does not give their "
             "agent (in ruche_ingest_bad by reason too)."),
)  # fmt: skip
_DOORS = (
    _Counted("ruche_door_unanswered", "errors",
             "Taps left to the agent's allow-list because the facts could not be read."),
    _Counted("ruche_door_resent", "resent",
             "Taps resent from an agent's outbox (already decided, not answered again)."),
    _Counted("ruche_door_commands", "commands",
             "Commands sent to agents (remote unlocks, lockdowns)."),
    _Counted("ruche_audit_rows", "audited", "Audit rows written by the door worker."),
    _Counted("ruche_audit_failures", "audit_failures", "Audit rows lost to a write failure."),
)  # fmt: skip
_DOOR_EVENTS = (
    _Counted("ruche_door_event_audited", "audited",
             "Offline decisions and door alarms handed to the audit log."),
    _Counted("ruche_door_event_failures", "failures",
             "Door events not audited because the database failed."),
)  # fmt: skip


class _StatsCollector(Collector):
    """Counters of a worker's stats object (`IngestStats`, `DoorStats`), and its `bad`
    messages by reason, read when scraped."""

    def __init__(
        self,
        stats: IngestStats | DoorStats | DoorEventStats | LiveHub | RefusedBodies,
        counted: tuple[_Counted, ...],
        bad: _Counted,
    ) -> None:
        self._stats = stats
        self._counted = counted
        self._bad = bad

    def collect(self) -> Iterable[Metric]:
        for counter in self._counted:
            yield _counter(counter.name, counter.doc, getattr(self._stats, counter.attribute))
        family = CounterMetricFamily(self._bad.name, self._bad.doc, labels=["reason"])
        yield _by_label(family, getattr(self._stats, self._bad.attribute))


class _InfluxCollector(Collector):
    def __init__(self, writer: InfluxWriter) -> None:
        self._writer = writer

    def collect(self) -> Iterable[Metric]:
        s = self._writer.stats()
        yield _counter("ruche_influx_points_written", "Points InfluxDB accepted.",
                       s.points_written)  # fmt: skip
        yield _counter("ruche_influx_batches_written", "Write requests InfluxDB accepted.",
                       s.batches_written)  # fmt: skip
        yield _by_label(
            CounterMetricFamily("ruche_influx_write_errors", "Failed write attempts, by kind "
                                "(connect, timeout, server, auth, not_found, throttled, "
                                "rejected, spool).", labels=["kind"]),
            dict(s.write_errors),
        )  # fmt: skip
        yield GaugeMetricFamily("ruche_influx_spool_points", "Points waiting on disk for "
                                "InfluxDB.", value=s.spooled_points)  # fmt: skip
        yield GaugeMetricFamily("ruche_influx_spool_bytes", "Bytes waiting on disk for "
                                "InfluxDB.", value=s.spool_bytes)  # fmt: skip
        yield GaugeMetricFamily("ruche_influx_spool_segments", "Spool segment files waiting "
                                "(one write request each).", value=self._segments())  # fmt: skip
        yield _counter("ruche_influx_dead_letter_batches", "Batches InfluxDB rejected, moved "
                       "to the dead-letter folder.", s.dead_lettered_batches)  # fmt: skip
        yield _counter("ruche_influx_dead_letter_points", "Points in those batches.",
                       s.dead_lettered_points)  # fmt: skip
        yield GaugeMetricFamily("ruche_influx_up", "1 when InfluxDB answered the last write "
                                "attempt.", value=1 if s.up else 0)  # fmt: skip

    def _segments(self) -> int:
        # The writer counts points, not files; the files on disk are the segments.
        try:
            return sum(1 for _ in self._writer.spool_dir.glob(f"*{SEGMENT_SUFFIX}"))
        except OSError:
            return 0


class _AgentCollector(Collector):
    def __init__(self, board: AgentBoard) -> None:
        self._board = board

    def collect(self) -> Iterable[Metric]:
        online = GaugeMetricFamily("ruche_agents_online", "Agents whose last status says "
                                   "online, per site.", labels=["site"])  # fmt: skip
        for site, count in sorted(self._board.online_by_site().items()):
            online.add_metric([site], count)
        outbox = GaugeMetricFamily("ruche_agent_outbox_depth", "Events an agent holds that "
                                   "the server has not acked, as its last status said.",
                                   labels=["site", "agent"])  # fmt: skip
        faults = GaugeMetricFamily("ruche_agent_faults", "Devices an agent reports at fault.",
                                   labels=["site", "agent"])  # fmt: skip
        config = GaugeMetricFamily("ruche_agent_config_version", "The version of its config "
                                   "from the server an agent runs.",
                                   labels=["site", "agent"])  # fmt: skip
        refused = GaugeMetricFamily("ruche_agent_config_refused", "1 while an agent reports "
                                    "it could not apply its latest config.",
                                    labels=["site", "agent"])  # fmt: skip
        for (site, agent), state in sorted(self._board.states().items()):
            outbox.add_metric([site, agent], state.outbox_depth)
            faults.add_metric([site, agent], state.faults)
            refused.add_metric([site, agent], 1 if state.config_refused else 0)
            if state.config_version is not None:
                config.add_metric([site, agent], state.config_version)
        yield from (online, outbox, faults, config, refused)


class _ChildrenCollector(Collector):
    def __init__(self, children: _Children) -> None:
        self._children = children

    def collect(self) -> Iterable[Metric]:
        running = self._children.running()
        yield GaugeMetricFamily("ruche_ingest_children_running", "Extra ingest processes "
                                "running (`--workers N`).",
                                value=sum(running.values()))  # fmt: skip
        yield _counter("ruche_ingest_children_restarts", "Extra ingest processes restarted "
                       "after dying.", self._children.restarts)  # fmt: skip


class ProcessMetrics:
    """One process's registry, its collectors, and the observations nothing else counts.

    `process` names it in `server_stats` points (`main`, `ingest-1`, ...). `clock` is the
    wall clock that ingestion lag is measured against.
    """

    def __init__(
        self, *, process: str = "main", clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.process = process
        self.registry = CollectorRegistry()
        self.agents = AgentBoard()
        self._clock = clock
        self._lock = threading.Lock()
        self._lags_ms: deque[float] = deque(maxlen=LAG_WINDOW)
        self._decided = 0
        self._ingest: IngestStats | None = None
        self._influx: InfluxWriter | None = None
        ProcessCollector(registry=self.registry)
        self._decisions = Counter(
            "ruche_door_decisions",
            "Taps decided and answered, by result (allowed, denied) and reason.",
            ["result", "reason"],
            registry=self.registry,
        )
        self._decision_seconds = Histogram(
            "ruche_door_decision_seconds",
            "From a tap reaching the server to its answer being sent.",
            buckets=DECISION_BUCKETS,
            registry=self.registry,
        )
        self._lag_seconds = Histogram(
            "ruche_ingest_lag_seconds",
            "From an event's time on its agent to its batch being stored "
            "(duplicates included; an agent's clock ahead of the server's counts 0).",
            buckets=LAG_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_AgentCollector(self.agents))

    # --- sources read at scrape time --------------------------------------------------

    def watch_ingest(self, stats: IngestStats) -> None:
        self._ingest = stats
        bad = _Counted("ruche_ingest_bad", "bad", "Messages refused by the contract, by reason.")
        self.registry.register(_StatsCollector(stats, _INGEST, bad))

    def watch_doors(self, stats: DoorStats) -> None:
        bad = _Counted("ruche_door_bad", "bad", "Tap messages refused, by reason.")
        self.registry.register(_StatsCollector(stats, _DOORS, bad))

    def watch_door_events(self, stats: DoorEventStats) -> None:
        bad = _Counted("ruche_door_event_bad", "bad", "Door events refused, by reason "
                       "(the contract's, or a door not the agent's).")  # fmt: skip
        self.registry.register(_StatsCollector(stats, _DOOR_EVENTS, bad))

    def watch_live(self, hub: LiveHub) -> None:
        bad = _Counted("ruche_live_bad", "bad", "Messages the live floor refused, by reason.")
        self.registry.register(_StatsCollector(hub, (), bad))

    def watch_bodies(self, stats: RefusedBodies) -> None:
        bad = _Counted("ruche_http_body_refused", "refused", "HTTP requests refused for their "
                       "body before it was read (too_large, bad_length).")  # fmt: skip
        self.registry.register(_StatsCollector(stats, (), bad))

    def watch_signins(self, stats: RefusedBodies) -> None:
        bad = _Counted("ruche_signin_refused", "refused", "Sign-in attempts and link requests "
                       "refused by a limit, by scope (account, address).")  # fmt: skip
        self.registry.register(_StatsCollector(stats, (), bad))

    def watch_influx(self, writer: InfluxWriter) -> None:
        self._influx = writer
        self.registry.register(_InfluxCollector(writer))

    def watch_children(self, children: _Children) -> None:
        self.registry.register(_ChildrenCollector(children))

    # --- observations -----------------------------------------------------------------

    def observe_decision(self, record: DecisionRecord) -> None:
        """`DoorWorker.on_decision`."""
        self._decisions.labels(record.result, record.reason).inc()
        self._decision_seconds.observe(record.latency_s)
        with self._lock:
            self._decided += 1

    def observe_stored(self, messages: list[Message]) -> None:
        """`IngestWorker.after_commit`: each event's lag, from its own time to now."""
        now = self._clock()
        lags = [
            max(0.0, (now - ts).total_seconds())
            for message in messages
            if isinstance(ts := getattr(message.payload, "ts", None), datetime)
        ]
        observe_many(self._lag_seconds, lags)
        with self._lock:
            self._lags_ms.extend(lag * 1000 for lag in lags)

    def observe_status(self, message: Message) -> Point | None:
        """An agent's `status`: remembered for the gauges; returns its `agent_status`
        point, timed now (a last will carries the time its agent connected, not when it
        went away), or None for a message that is not a status."""
        if not isinstance(message.payload, Status):
            return None
        site, agent = message.topic.site, message.topic.agent
        state = self.agents.record(site, agent, message.payload)
        return agent_status_point(site, agent, state, time_ns=time_ns(self._clock()))

    # --- reading ----------------------------------------------------------------------

    def exposition(self) -> bytes:
        """Every metric in Prometheus's text format (`CONTENT_TYPE`)."""
        return generate_latest(self.registry)

    def take_snapshot(self) -> StatsSnapshot:
        """The figures of a `server_stats` point; lag percentiles cover the events stored
        since the previous snapshot, whose lags are then forgotten."""
        with self._lock:
            lags = list(self._lags_ms)
            self._lags_ms.clear()
            decided = self._decided
        ingest = self._ingest
        influx: InfluxWriterStats | None = None if self._influx is None else self._influx.stats()
        return StatsSnapshot(
            received=0 if ingest is None else ingest.received,
            stored=0 if ingest is None else ingest.stored,
            duplicates=0 if ingest is None else ingest.duplicates,
            bad=0 if ingest is None else sum(ingest.bad.values()),
            lag_ms_p50=percentile(lags, 0.5),
            lag_ms_p99=percentile(lags, 0.99),
            spool_points=0 if influx is None else influx.spooled_points,
            influx_write_errors=0 if influx is None else sum(influx.write_errors.values()),
            points_written=0 if influx is None else influx.points_written,
            decisions=decided,
        )


class StatusRecorder:
    """`LiveHub.on_status`: each agent status into the metrics and, as an `agent_status`
    point, into InfluxDB (through the writer's spool, so an outage loses none)."""

    def __init__(self, metrics: ProcessMetrics, writer: InfluxWriter | None) -> None:
        self._metrics = metrics
        self._writer = writer

    def __call__(self, message: Message) -> None:
        point = self._metrics.observe_status(message)
        if point is not None and self._writer is not None:
            self._writer.write([point])


class StatsReporter:
    """Writes this process's `server_stats` point through its InfluxDB writer: once on
    start, every `interval` seconds, and once more on stop.

    Points go to the writer's spool, so those made while InfluxDB is down land after it
    returns, each with the time it was made.
    """

    def __init__(
        self,
        metrics: ProcessMetrics,
        writer: InfluxWriter,
        *,
        host: str | None = None,
        interval: float = STATS_INTERVAL_S,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        if interval <= 0:
            raise ValueError(f"the stats interval must be positive, not {interval}")
        self._metrics = metrics
        self._writer = writer
        self.host = host or socket.gethostname()
        self.interval = interval
        self._clock = clock
        self._thread = StoppableThread(self._run, name="stats-reporter")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Write the last point and stop (before the writer closes)."""
        self._thread.stop()

    def report(self) -> Point:
        """Write one `server_stats` point now; return it."""
        point = server_stats_point(
            self._metrics.take_snapshot(),
            host=self.host,
            process=self._metrics.process,
            time_ns=time_ns(self._clock()),
        )
        self._writer.write([point])
        return point

    def _run(self, stopping: threading.Event) -> None:
        self._report_logged()
        while not stopping.wait(self.interval):
            self._report_logged()
        self._report_logged()

    def _report_logged(self) -> None:
        try:
            self.report()
        except Exception:
            # The spool's disk refused it: the next interval tries again.
            log.exception("could not write the server_stats point")
