"""`ruche server run`: the REST API and the MQTT workers in one process.

Migrations run first; then event ingestion (which acks agents), the door
decision worker, the allow-list publisher and the door-event worker connect;
then uvicorn serves the API until SIGINT or SIGTERM, after which the workers
stop (flushing queued audit rows).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from types import FrameType

import uvicorn
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import Message
from ruche.server.access.allowlists import AllowlistPublisher
from ruche.server.access.door_events import DoorEventWorker
from ruche.server.access.taps import DoorWorker
from ruche.server.api.app import create_app
from ruche.server.api.routes.health import HealthChecks
from ruche.server.messaging.connection import MqttOptions
from ruche.server.occupancy.ingest import IngestWorker
from ruche.server.occupancy.live import LiveHub
from ruche.server.occupancy.worker import OccupancyWorker
from ruche.server.ops.metrics import STATS_INTERVAL_S, ProcessMetrics, StatsReporter, StatusRecorder
from ruche.server.registry.config_publisher import ConfigPublisher
from ruche.server.registry.listener import RegistryListener, SiteChangeFanout
from ruche.server.registry.ownership import DeviceOwners
from ruche.server.settings import ServerSettings
from ruche.server.storage.db import is_sqlite, make_engine, make_sessions, run_migrations
from ruche.server.storage.lock import hold_database
from ruche.server.storage.wal import WalCheckpointer
from ruche.server.timeseries.influx import InfluxWriter
from ruche.server.timeseries.points import write_events

log = logging.getLogger(__name__)


Worker = (
    DoorWorker
    | AllowlistPublisher
    | ConfigPublisher
    | DoorEventWorker
    | IngestWorker
    | OccupancyWorker
    | LiveHub
    | WalCheckpointer
)


@dataclass
class ServerWorkers:
    """The server's MQTT side."""

    doors: DoorWorker
    allowlists: AllowlistPublisher
    door_events: DoorEventWorker
    ingest: IngestWorker
    occupancy: OccupancyWorker
    live: LiveHub
    influx: InfluxWriter | None = None
    configs: ConfigPublisher | None = None
    metrics: ProcessMetrics = field(default_factory=ProcessMetrics)
    reporter: StatsReporter | None = None
    checkpointer: WalCheckpointer | None = None
    owners: DeviceOwners | None = None

    @classmethod
    def build(
        cls,
        settings: ServerSettings,
        sessions: sessionmaker[Session],
        *,
        processes: int = 1,
        stats_interval: float = STATS_INTERVAL_S,
        ingest_sessions: sessionmaker[Session] | None = None,
        checkpointer: WalCheckpointer | None = None,
    ) -> ServerWorkers:
        """`processes`: how many processes ingest (this one and `processes - 1`
        `ruche server ingest` children); with one, the live floor takes presence from
        this process's ingestion instead of decoding every event a second time.
        `stats_interval`: seconds between `server_stats` points (with InfluxDB).
        `ingest_sessions`, `checkpointer`: ingestion's own engine and the thread that
        checkpoints its WAL (`ingest_database`)."""
        options = mqtt_options(settings)
        influx = _influx_writer(settings)
        metrics = ProcessMetrics(process="main")
        owners = DeviceOwners(sessions)
        sink = None if influx is None else functools.partial(write_events, influx)
        live = LiveHub(
            sessions,
            options,
            follow_presence=processes > 1,
            on_status=StatusRecorder(metrics, influx),
        )
        doors = DoorWorker(
            sessions, options, unlock_ms=settings.unlock_ms, on_decision=metrics.observe_decision
        )
        ingest = IngestWorker(
            ingest_sessions or sessions,
            options,
            before_ack=sink,
            after_commit=_then(metrics.observe_stored, None if processes > 1 else live.take),
            owners=owners,
        )
        door_events = DoorEventWorker(sessions, options, owners=owners)
        metrics.watch_ingest(ingest.stats)
        metrics.watch_doors(doors.stats)
        metrics.watch_door_events(door_events.stats)
        metrics.watch_live(live)
        reporter = None
        if influx is not None:
            metrics.watch_influx(influx)
            reporter = StatsReporter(metrics, influx, interval=stats_interval)
        return cls(
            influx=influx,
            doors=doors,
            allowlists=AllowlistPublisher(
                sessions, options, horizon=timedelta(hours=settings.allowlist_hours)
            ),
            configs=ConfigPublisher(sessions, options),
            door_events=door_events,
            owners=owners,
            ingest=ingest,
            occupancy=OccupancyWorker(sessions, points=influx, apart=settings.database_url),
            live=live,
            metrics=metrics,
            reporter=reporter,
            checkpointer=checkpointer,
        )

    @property
    def listener(self) -> SiteChangeFanout:
        listeners: list[RegistryListener] = [self.doors, self.allowlists, self.live]
        if self.owners is not None:
            listeners.append(self.owners)
        if self.configs is not None:
            listeners.append(self.configs)
        return SiteChangeFanout(*listeners)

    def start(self, timeout: float = 30.0) -> None:
        """Connect every worker (TimeoutError says the broker is unreachable)."""
        self.occupancy.listener = self.listener
        self.doors.listener = self.listener  # a badge enrolled by tap republishes allow-lists
        started: list[Worker] = []
        first: tuple[Worker, ...] = () if self.checkpointer is None else (self.checkpointer,)
        configs: tuple[Worker, ...] = () if self.configs is None else (self.configs,)
        try:
            for worker in (
                *first, self.ingest, self.doors, self.allowlists, *configs, self.door_events,
                self.occupancy, self.live,
            ):  # fmt: skip
                worker.start(timeout)
                started.append(worker)
        except BaseException:
            for worker in reversed(started):
                worker.stop()
            raise
        if self.reporter is not None:
            self.reporter.start()

    def stop(self) -> None:
        configs: tuple[Worker, ...] = () if self.configs is None else (self.configs,)
        stopping: tuple[Worker, ...] = (
            self.live, self.occupancy, self.door_events, *configs, self.allowlists, self.doors,
            self.ingest,
        )  # fmt: skip
        for worker in stopping:
            worker.stop()
        if self.checkpointer is not None:
            self.checkpointer.stop()
        if self.reporter is not None:
            self.reporter.stop()  # its last point, before the writer closes
        if self.influx is not None:
            self.influx.close()

    def connections(self) -> dict[str, Callable[[], bool]]:
        """Each MQTT worker's name and whether it is connected, for `/readyz`."""
        return {
            "ingest": lambda: self.ingest.connection.connected,
            "doors": lambda: self.doors.connection.connected,
            "allowlists": lambda: self.allowlists.connection.connected,
            **({} if self.configs is None else {"configs": self._configs_connected}),
            "door_events": lambda: self.door_events.connection.connected,
            "live": lambda: self.live.connected,
        }

    def _configs_connected(self) -> bool:
        return self.configs is not None and self.configs.connection.connected

    def health_checks(self, sessions: sessionmaker[Session]) -> HealthChecks:
        """What `/readyz` and `/metrics` of this process read."""
        return HealthChecks(
            sessions, metrics=self.metrics, mqtt=self.connections(), influx=self.influx
        )


def _then(
    first: Callable[[list[Message]], None], second: Callable[[list[Message]], None] | None
) -> Callable[[list[Message]], None]:
    """One `after_commit` hook calling two."""
    if second is None:
        return first

    def both(messages: list[Message]) -> None:
        first(messages)
        second(messages)

    return both


def mqtt_options(settings: ServerSettings) -> MqttOptions:
    mqtt = settings.mqtt
    return MqttOptions(
        host=mqtt.host,
        port=mqtt.port,
        username=mqtt.username,
        password=mqtt.password.get_secret_value(),
        ca_file=mqtt.ca_file,
        keepalive=mqtt.keepalive,
    )


def _influx_writer(settings: ServerSettings, spool: str | None = None) -> InfluxWriter | None:
    """The InfluxDB writer, spooling in `spool_dir` (or its `spool` subfolder: one
    writer per folder, so each ingest process has its own)."""
    config = settings.influx
    if config is None:
        return None
    writer = InfluxWriter(
        config.url,
        config.database,
        token=None if config.token is None else config.token.get_secret_value(),
        username=config.username,
        password=None if config.password is None else config.password.get_secret_value(),
        retention_policy=config.retention_policy,
        spool_dir=config.spool_dir if spool is None else config.spool_dir / spool,
    )
    # Logs whether the database was there, was created, or why not (2.x and 3.x refuse
    # CREATE DATABASE); points wait in the spool whatever it says.
    writer.prepare_database()
    return writer


def run_server(
    settings: ServerSettings,
    *,
    workers: int = 1,
    config: Path | None = None,
    log_level: str = "INFO",
) -> int:
    """Migrate, start the workers, serve HTTP until a signal; return the exit status.

    `workers > 1` also starts `workers - 1` ingest-only processes (`ruche server
    ingest`, same `config` and environment), restarted if they die.
    """
    # Held until the process exits (the kernel drops it then, whatever happens before the
    # try below): `ruche server restore` refuses while it is held.
    held = hold_database(settings.database_url)
    run_migrations(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    ingest_engine, checkpointer = ingest_database(settings.database_url)
    mqtt_workers = ServerWorkers.build(
        settings,
        sessions,
        processes=workers,
        ingest_sessions=make_sessions(ingest_engine),
        checkpointer=checkpointer,
    )
    mqtt_workers.start(settings.mqtt.connect_timeout_s)
    children = IngestChildren(workers - 1, config=config, log_level=log_level)
    if workers > 1:
        mqtt_workers.metrics.watch_children(children)
    try:
        children.start()
        app = create_app(
            sessions=sessions,
            commands=mqtt_workers.doors,
            listener=mqtt_workers.listener,
            live=mqtt_workers.live,
            health=mqtt_workers.health_checks(sessions),
            max_body_bytes=settings.http.max_body_bytes,
            mail=settings.mail,
        )
        http = uvicorn.Config(
            app,
            host=settings.http.host,
            port=settings.http.port,
            log_config=None,
            access_log=False,
        )
        log.info("serving the API on http://%s:%s", settings.http.host, settings.http.port)
        # Everything made so far lives as long as the process: out of the collector's
        # sight, a full collection scans only what requests make. Measured on a page
        # that reads 2,000 members: pauses of about 90 ms fell under 16 ms.
        gc.collect()
        gc.freeze()
        _serve(uvicorn.Server(http))
    finally:
        children.stop()
        mqtt_workers.stop()
        ingest_engine.dispose()
        engine.dispose()
        held.release()
    return 0


def ingest_database(url: str) -> tuple[Engine, WalCheckpointer | None]:
    """Ingestion's own engine; on SQLite, one whose commits leave checkpointing the WAL to
    the returned checkpointer (started and stopped with the workers)."""
    if not is_sqlite(url):
        return make_engine(url), None
    engine = make_engine(url, autocheckpoint=False)
    return engine, WalCheckpointer(engine)


def run_ingest(settings: ServerSettings, *, name: str) -> int:
    """`ruche server ingest`: one more ingestion process on the shared subscription, its
    InfluxDB spool in `spool_dir/name`; until SIGINT or SIGTERM."""
    held = hold_database(settings.database_url)  # as run_server's
    engine, checkpointer = ingest_database(settings.database_url)
    influx = _influx_writer(settings, spool=name)
    sink = None if influx is None else functools.partial(write_events, influx)
    metrics = ProcessMetrics(process=name)
    worker = IngestWorker(make_sessions(engine), mqtt_options(settings), before_ack=sink,
                          after_commit=metrics.observe_stored)  # fmt: skip
    metrics.watch_ingest(worker.stats)
    reporter = None
    if influx is not None:
        metrics.watch_influx(influx)
        reporter = StatsReporter(metrics, influx)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if checkpointer is not None:
            checkpointer.start()
        worker.start(settings.mqtt.connect_timeout_s)
        if reporter is not None:
            reporter.start()
        log.info("ingest process %s is taking events", name)
        stop.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        worker.stop()
        if checkpointer is not None:
            checkpointer.stop()
        if reporter is not None:
            reporter.stop()
        if influx is not None:
            influx.close()
        engine.dispose()
        held.release()
    return 0


class IngestChildren:
    """The extra ingest processes of `ruche server run --workers N`, restarted when they die.

    Each keeps its name (`ingest-1`, ...) across restarts, hence its spool folder: a
    restarted child replays what its predecessor spooled but had not yet written.
    """

    RESTART_DELAY_S = 1.0

    def __init__(self, count: int, *, config: Path | None, log_level: str) -> None:
        self._count = count
        self._config = config
        self._log_level = log_level
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.restarts = 0

    def pids(self) -> list[int]:
        return [child.pid for child in self._children.values()]

    def running(self) -> dict[str, bool]:
        """Each child's name and whether its process is alive now."""
        return {name: child.poll() is None for name, child in list(self._children.items())}

    def start(self) -> None:
        if self._count < 1:
            return
        for i in range(1, self._count + 1):
            self._spawn(f"ingest-{i}")
        self._thread = threading.Thread(target=self._watch, name="ingest-children", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(5)
        for child in self._children.values():
            if child.poll() is None:
                child.terminate()
        for name, child in self._children.items():
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                log.warning("ingest process %s did not stop in 30 s: killed", name)
                child.kill()
                child.wait()

    def _spawn(self, name: str) -> None:
        command = [sys.executable, "-m", "ruche", "server", "ingest", "--name", name,
                   "--log-level", self._log_level]  # fmt: skip
        if self._config is not None:
            command += ["--config", str(self._config)]
        self._children[name] = subprocess.Popen(command)
        log.info("started ingest process %s (pid %d)", name, self._children[name].pid)

    def _watch(self) -> None:
        while not self._stopping.wait(self.RESTART_DELAY_S):
            for name, child in list(self._children.items()):
                code = child.poll()
                if code is not None and not self._stopping.is_set():
                    log.warning("ingest process %s exited with %s: starting it again", name, code)
                    self.restarts += 1
                    self._spawn(name)


def _serve(server: uvicorn.Server) -> None:
    """Run uvicorn with our own SIGINT/SIGTERM handling.

    uvicorn re-raises the signal once it has shut down, which would end the process
    before the workers stop and flush their queued audit rows.
    """

    @contextlib.contextmanager
    def no_capture() -> Iterator[None]:
        yield

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: shutting down", signal.Signals(signum).name)
        server.should_exit = True

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    server.capture_signals = no_capture  # type: ignore[method-assign]
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
