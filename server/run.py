"""`ruche server run`: the REST API and the MQTT workers in one process.

Migrations run first; then event ingestion (which acks agents), the door
decision worker, the allow-list publisher and the door-event worker connect;
then uvicorn serves the API until SIGINT or SIGTERM, after which the workers
stop (flushing queued audit rows).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session, sessionmaker

from ruche.server.allowlists import AllowlistPublisher
from ruche.server.connection import MqttOptions
from ruche.server.door_events import DoorEventWorker
from ruche.server.doors import DoorWorker
from ruche.server.influx import InfluxError, InfluxWriter
from ruche.server.ingest import IngestWorker
from ruche.server.live import LiveHub
from ruche.server.occupancy import OccupancyWorker
from ruche.server.points import write_events
from ruche.server.ports import RegistryListener
from ruche.server.settings import ServerSettings

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)


Worker = (
    DoorWorker | AllowlistPublisher | DoorEventWorker | IngestWorker | OccupancyWorker | LiveHub
)


class SiteChangeFanout:
    """One RegistryListener telling several: the decision cache and the allow-list publisher."""

    def __init__(self, *listeners: RegistryListener) -> None:
        self._listeners = listeners

    def site_changed(self, site: str) -> None:
        for listener in self._listeners:
            listener.site_changed(site)


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

    @classmethod
    def build(cls, settings: ServerSettings, sessions: sessionmaker[Session]) -> ServerWorkers:
        mqtt = settings.mqtt
        options = MqttOptions(
            host=mqtt.host,
            port=mqtt.port,
            username=mqtt.username,
            password=mqtt.password.get_secret_value(),
            ca_file=mqtt.ca_file,
            keepalive=mqtt.keepalive,
        )
        influx = _influx_writer(settings)
        sink = None if influx is None else functools.partial(write_events, influx)
        return cls(
            influx=influx,
            doors=DoorWorker(sessions, options, unlock_ms=settings.unlock_ms),
            allowlists=AllowlistPublisher(
                sessions, options, horizon=timedelta(hours=settings.allowlist_hours)
            ),
            door_events=DoorEventWorker(sessions, options),
            ingest=IngestWorker(sessions, options, before_commit=sink),
            occupancy=OccupancyWorker(sessions),
            live=LiveHub(sessions, options),
        )

    @property
    def listener(self) -> SiteChangeFanout:
        return SiteChangeFanout(self.doors, self.allowlists, self.live)

    def start(self, timeout: float = 30.0) -> None:
        """Connect every worker (TimeoutError says the broker is unreachable)."""
        self.occupancy.listener = self.listener
        started: list[Worker] = []
        try:
            for worker in (
                self.ingest, self.doors, self.allowlists, self.door_events, self.occupancy,
                self.live,
            ):  # fmt: skip
                worker.start(timeout)
                started.append(worker)
        except BaseException:
            for worker in reversed(started):
                worker.stop()
            raise

    def stop(self) -> None:
        stopping: tuple[Worker, ...] = (
            self.live, self.occupancy, self.door_events, self.allowlists, self.doors, self.ingest,
        )  # fmt: skip
        for worker in stopping:
            worker.stop()
        if self.influx is not None:
            self.influx.close()


def _influx_writer(settings: ServerSettings) -> InfluxWriter | None:
    config = settings.influx
    if config is None:
        return None
    writer = InfluxWriter(
        config.url,
        config.database,
        token=None if config.token is None else config.token.get_secret_value(),
        username=config.username,
        password=None if config.password is None else config.password.get_secret_value(),
        spool_dir=config.spool_dir,
    )
    try:
        # InfluxDB 1.x creates databases on demand; 2.x/3.x map the name to a bucket.
        writer.query(f'CREATE DATABASE "{config.database}"')
    except InfluxError as exc:
        log.warning("could not create InfluxDB database %s (points wait in the spool): %s",
                    config.database, exc)  # fmt: skip
    return writer


def run_server(settings: ServerSettings) -> int:
    """Migrate, start the workers, serve HTTP until a signal; return the exit status."""
    import uvicorn  # noqa: PLC0415 - only the server imports the web stack

    from ruche.server.api import create_app  # noqa: PLC0415
    from ruche.server.db import make_engine, make_sessions, run_migrations  # noqa: PLC0415

    run_migrations(settings.database_url)
    engine = make_engine(settings.database_url)
    sessions = make_sessions(engine)
    workers = ServerWorkers.build(settings, sessions)
    workers.start()
    try:
        app = create_app(
            sessions=sessions,
            commands=workers.doors,
            listener=workers.listener,
            live=workers.live,
        )
        config = uvicorn.Config(
            app,
            host=settings.http.host,
            port=settings.http.port,
            log_config=None,
            access_log=False,
        )
        log.info("serving the API on http://%s:%s", settings.http.host, settings.http.port)
        _serve(uvicorn.Server(config))
    finally:
        workers.stop()
        engine.dispose()
    return 0


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
