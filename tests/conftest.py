"""The real-service test rig.

Session fixtures start a real Mosquitto on Ruche's generated configuration, a
real influxd (Debian's InfluxDB 1.x) and use or start a real PostgreSQL. Each
test gets its own site (so its own topic prefix `ruche/v1/{site}/`, with agent
accounts confined there by the ACL), its own InfluxDB database and its own
PostgreSQL database. A missing binary fails the run naming the Debian package;
nothing is skipped.
"""

from __future__ import annotations

import itertools
import os
import queue
import secrets
import shutil
import ssl
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import pytest
from gpiozero.pins.mock import MockFactory
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.control import BrokerControl
from ruche.broker.dynsec import add_agent_commands
from ruche.broker.passwords import generate_password
from ruche.edge.agent import Agent
from ruche.edge.gpio import DoorPins
from ruche.edge.settings import AgentSettings, DoorSettings, MqttSettings
from ruche.mqtt import stop_client
from ruche.server.storage.db import make_engine, make_sessions, run_migrations
from ruche.sim.door import SimDoor
from ruche.sim.services.influxd import InfluxdError, InfluxdProcess
from ruche.sim.services.mosquitto import MosquittoError, MosquittoProcess
from ruche.sim.services.sockets import free_port
from ruche.sim.testing.sites import SiteBuilder

_counter = itertools.count(1)


# Longest first: the end-to-end files (a few long tests each), then the browser pages,
# then the integration files, then the unit tests. `make test` runs xdist with
# --no-loadscope-reorder, which keeps this order; xdist's own order (most tests first)
# left the few long files to the end, one worker finishing alone for minutes.
_FOLDER_ORDER = ("e2e", "web", "integration", "unit")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        parts = item.path.parts
        folder = parts[parts.index("tests") + 1] if "tests" in parts else ""
        return _FOLDER_ORDER.index(folder) if folder in _FOLDER_ORDER else len(_FOLDER_ORDER)

    items.sort(key=rank)  # stable: the files keep their order within a folder


def unique_name(prefix: str) -> str:
    return f"{prefix}{next(_counter)}x{secrets.token_hex(3)}"


# --- MQTT -------------------------------------------------------------------------


class Probe:
    """A paho MQTT client for tests: blocking connect, subscribe and publish, and a queue
    of what arrived.

    Without `client_id`, an agent account (`site/agent`) connects with its username, the
    one client id the broker takes from it, as a real agent does; any other with a
    unique one."""

    def __init__(
        self,
        host: str,
        port: int,
        username: str | None,
        password: str | None,
        *,
        protocol: int = mqtt.MQTTv5,
        client_id: str = "",
        clean_start: bool = True,
        session_expiry: int | None = None,
        ca_file: Path | None = None,
    ) -> None:
        """`ca_file`: connect over TLS, trusting that CA."""
        self.host, self.port = host, port
        self.protocol = protocol
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or _default_client_id(username),
            protocol=protocol,
            **({} if protocol == mqtt.MQTTv5 else {"clean_session": clean_start}),
        )
        if username is not None:
            self.client.username_pw_set(username, password)
        if ca_file is not None:
            self.client.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
        self.clean_start = clean_start
        self.session_expiry = session_expiry
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.connack: ReasonCode | None = None
        self.disconnected = threading.Event()
        self.disconnect_reason: ReasonCode | None = None
        self._connected = threading.Event()
        self._subacks: dict[int, threading.Event] = {}
        self._granted: dict[int, list[ReasonCode]] = {}
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.client.on_subscribe = self._on_subscribe

    def _on_connect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.connack = reason
        self._connected.set()

    def _on_disconnect(self, _c: Any, _u: Any, _f: Any, reason: ReasonCode, _p: Any) -> None:
        self.disconnect_reason = reason
        self.disconnected.set()
        self._connected.set()

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: Any, _p: Any) -> None:
        self._granted[mid] = list(reasons)
        self._subacks.setdefault(mid, threading.Event()).set()

    def connect(self, timeout: float = 5.0) -> ReasonCode | None:
        """Connect and wait for CONNACK (or a refusal); return its reason code."""
        props = None
        if self.protocol == mqtt.MQTTv5:
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
        kwargs: dict[str, Any] = {"properties": props}
        if self.protocol == mqtt.MQTTv5:
            kwargs["clean_start"] = self.clean_start
        self._connected.clear()
        self.disconnected.clear()
        self.client.connect(self.host, self.port, keepalive=30, **kwargs)
        self.client.loop_start()
        assert self._connected.wait(timeout), "no CONNACK"
        return self.connack

    @property
    def connected(self) -> bool:
        return self.client.is_connected()

    def subscribe(self, topic: str, qos: int = 1, timeout: float = 5.0) -> None:
        """Subscribe, failing unless the broker grants it."""
        reason = self.try_subscribe(topic, qos, timeout)
        assert not reason.is_failure, f"subscription to {topic} refused: {reason}"

    def try_subscribe(self, topic: str, qos: int = 1, timeout: float = 5.0) -> ReasonCode:
        """Subscribe and return the SUBACK's reason code, granted or not."""
        result, mid = self.client.subscribe(topic, qos=qos)
        assert result == mqtt.MQTT_ERR_SUCCESS
        event = self._subacks.setdefault(mid, threading.Event())
        assert event.wait(timeout), f"no SUBACK for {topic}"
        granted = self._granted.pop(mid)
        if isinstance(granted[0], int):  # MQTT 3.1.1: granted QoS, or 0x80 for a refusal
            return ReasonCode(PacketTypes.SUBACK, identifier=granted[0])
        reason: ReasonCode = granted[0]
        return reason

    def publish(
        self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False
    ) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def take(self, count: int, timeout: float = 10.0) -> list[mqtt.MQTTMessage]:
        """Exactly `count` messages, failing if they do not arrive within `timeout`."""
        got: list[mqtt.MQTTMessage] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            remaining = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(remaining, 0.001)))
            except queue.Empty:
                pytest.fail(f"only {len(got)} of {count} messages arrived in {timeout} s")
        return got

    def close(self) -> None:
        stop_client(self.client)


def _default_client_id(username: str | None) -> str:
    if username is not None and "/" in username:
        return username
    return unique_name("probe-")


@dataclass
class BrokerRig:
    """The session's Mosquitto. Accounts are added per test through the dynamic security
    plugin's control topic, as the server account adds them to a running site."""

    process: MosquittoProcess
    server: ServerAccount
    agents: list[AgentAccount] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return self.process.host

    @property
    def port(self) -> int:
        return self.process.port

    def accounts(self) -> Accounts:
        return Accounts(server=self.server, agents=tuple(self.agents))

    def register(self, site: str, agent_ids: list[str]) -> dict[str, AgentAccount]:
        """Add agent accounts at `site` to the running Mosquitto; they can log in on return."""
        new = {a: AgentAccount(site=site, id=a, password=generate_password()) for a in agent_ids}
        commands = [
            c
            for account in new.values()
            for c in add_agent_commands(site, account.id, account.password.get_secret_value())
        ]
        with self.lock:
            self.agents.extend(new.values())
            with BrokerControl(self.host, self.port, self.server.username,
                               self.server.password.get_secret_value()) as control:  # fmt: skip
                control.run(commands)
        return new


def _require(binary: str, package: str, extra_paths: tuple[str, ...] = ()) -> str:
    found = shutil.which(binary) or next((p for p in extra_paths if Path(p).exists()), None)
    if found is None:
        pytest.fail(
            f"{binary} is not installed: install the Debian package {package!r} "
            f"(apt-get install {package}; `make test` does this)",
            pytrace=False,
        )
    return found


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerRig]:
    """A real Mosquitto on Ruche's generated config, for the whole session."""
    _require("mosquitto", "mosquitto", ("/usr/sbin/mosquitto",))
    server = ServerAccount(password=generate_password())
    try:
        process = MosquittoProcess.generate(
            tmp_path_factory.mktemp("mosquitto"), Accounts(server=server)
        )
        process.start()
    except MosquittoError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield BrokerRig(process=process, server=server)
    process.stop()


@dataclass(frozen=True)
class SiteRig:
    """One test's slice of the broker: its own site (topic prefix) and agent accounts."""

    site: str
    agents: dict[str, AgentAccount]
    broker: BrokerRig
    probes: list[Probe]

    @property
    def prefix(self) -> str:
        return f"ruche/v1/{self.site}/"

    def connect_server(self, **kwargs: Any) -> Probe:
        return self._connect(self.broker.server.username,
                             self.broker.server.password.get_secret_value(), **kwargs)  # fmt: skip

    def connect_agent(self, agent: str, **kwargs: Any) -> Probe:
        """Connect as one of this site's agents, with the one client id its account may use."""
        account = self.agents[agent]
        kwargs.setdefault("client_id", account.client_id)
        return self._connect(account.username, account.password.get_secret_value(), **kwargs)

    def _connect(self, username: str, password: str, **kwargs: Any) -> Probe:
        probe = Probe(self.broker.host, self.broker.port, username, password, **kwargs)
        self.probes.append(probe)
        reason = probe.connect()
        assert reason is not None
        assert not reason.is_failure, f"{username} refused: {reason}"
        return probe


@pytest.fixture
def site(broker: BrokerRig) -> Iterator[SiteRig]:
    """A fresh site with agents `agent-a` and `agent-b` registered on the session broker."""
    name = unique_name("s")
    rig = SiteRig(name, broker.register(name, ["agent-a", "agent-b"]), broker, [])
    yield rig
    for probe in rig.probes:
        probe.close()


@pytest.fixture
def probe_factory(broker: BrokerRig) -> Iterator[Callable[..., Probe]]:
    """Build unconnected probes to the session broker (for refused logins and the like)."""
    made: list[Probe] = []

    def make(username: str | None, password: str | None, **kwargs: Any) -> Probe:
        probe = Probe(broker.host, broker.port, username, password, **kwargs)
        made.append(probe)
        return probe

    yield make
    for probe in made:
        probe.close()


# --- the edge agent ---------------------------------------------------------------

EDGE_SITE_KEY = "00112233445566778899aabbccddeeff"
DOOR_PINS = DoorPins(relay_pin=17, contact_pin=27, exit_pin=22)


@dataclass
class EdgeRig:
    """An in-process agent on gpiozero mock pins, and the physical door if asked for."""

    agent: Agent
    sim: SimDoor | None
    factory: MockFactory


@pytest.fixture
def edge_agent(site: SiteRig, tmp_path: Path) -> Iterator[Callable[..., EdgeRig]]:
    """Build `agent-a` of this test's site with one door `front` (relay 17, contact 27,
    exit 22) and its NFC reader on nfcpy's UDP driver; stopped afterwards."""
    made: list[EdgeRig] = []

    def make(
        *, held_open_s: float = 5.0, reader: str | None = None, sim_door: bool = False
    ) -> EdgeRig:
        account = site.agents["agent-a"]
        settings = AgentSettings(
            site=site.site,
            agent="agent-a",
            site_key=EDGE_SITE_KEY,
            state_dir=tmp_path / f"state-{len(made)}",
            mqtt=MqttSettings(
                host=site.broker.host,
                port=site.broker.port,
                username=account.username,
                password=account.password.get_secret_value(),
                resend_after_s=1.0,
            ),
            doors=(
                DoorSettings(
                    id="front",
                    reader=reader or f"udp:127.0.0.1:{free_port()}",
                    relay_pin=17,
                    contact_pin=27,
                    exit_pin=22,
                    unlock_ms=2000,
                    held_open_s=held_open_s,
                ),
            ),
            request_timeout_ms=300,
            gpio="mock",
        )
        factory = MockFactory()
        # The physical door exists before the agent boots, as on site.
        sim = SimDoor(DOOR_PINS, factory=factory) if sim_door else None
        agent = Agent(settings, pin_factory=factory)
        rig = EdgeRig(agent, sim, factory)
        made.append(rig)
        agent.start()
        deadline = time.monotonic() + 10
        while not agent.link.connected:
            assert time.monotonic() < deadline, "the agent never connected"
            time.sleep(0.01)
        return rig

    yield make
    for rig in made:
        rig.agent.stop()
        rig.factory.close()


# --- InfluxDB ---------------------------------------------------------------------


@dataclass(frozen=True)
class InfluxRig:
    url: str
    database: str

    def write(self, lines: str) -> httpx.Response:
        return httpx.post(f"{self.url}/write", params={"db": self.database, "precision": "ns"},
                          content=lines.encode(), timeout=10)  # fmt: skip

    def query(self, q: str) -> dict[str, Any]:
        response = httpx.post(f"{self.url}/query", data={"db": self.database, "q": q}, timeout=10)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxdProcess]:
    """A real influxd (InfluxDB 1.x) in a temporary directory, for the whole session."""
    _require("influxd", "influxdb")
    try:
        process = InfluxdProcess(tmp_path_factory.mktemp("influxd"))
        process.start()
    except InfluxdError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield process
    process.stop()


@pytest.fixture
def influx(influxd: InfluxdProcess) -> Iterator[InfluxRig]:
    """A database of this test's own on the session's influxd."""
    name = unique_name("t")
    httpx.post(f"{influxd.url}/query", data={"q": f'CREATE DATABASE "{name}"'},
               timeout=10).raise_for_status()  # fmt: skip
    yield InfluxRig(influxd.url, name)
    httpx.post(f"{influxd.url}/query", data={"q": f'DROP DATABASE "{name}"'}, timeout=10)


# --- PostgreSQL -------------------------------------------------------------------


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def dsn(self, database: str) -> str:
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"

    def url(self, database: str) -> str:
        user = urllib.parse.quote(self.user)
        return f"postgresql+psycopg://{user}@{self.host}:{self.port}/{database}"


def _answers(server: PostgresServer) -> bool:
    try:
        with psycopg.connect(server.dsn("postgres"), connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _start_private_postgres(directory: Path) -> tuple[PostgresServer, Callable[[], None]]:
    """initdb and pg_ctl in a temporary directory, as the `postgres` user when we are root."""
    bindirs = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    extra = tuple(str(b / "initdb") for b in bindirs)
    initdb = _require("initdb", "postgresql", extra)
    pg_ctl = str(Path(initdb).with_name("pg_ctl"))
    port = free_port()
    data = directory / "data"
    run_as: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    subprocess.run([*run_as, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"],
                   check=True, capture_output=True)  # fmt: skip
    options = f"-p {port} -k {directory} -c listen_addresses=127.0.0.1 -c fsync=off"
    subprocess.run([*run_as, pg_ctl, "-D", str(data), "-o", options, "-l",
                    str(directory / "postgres.log"), "-w", "start"], check=True)  # fmt: skip

    def stop() -> None:
        subprocess.run([*run_as, pg_ctl, "-D", str(data), "-m", "fast", "stop"], check=False)

    return PostgresServer("127.0.0.1", port, "postgres"), stop


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """The PostgreSQL at 127.0.0.1:5432 when it answers, else a private one."""
    local = PostgresServer("127.0.0.1", 5432, "postgres")
    if _answers(local):
        yield local
        return
    server, stop = _start_private_postgres(tmp_path_factory.mktemp("postgres"))
    try:
        yield server
    finally:
        stop()


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A SQLAlchemy URL to a database of this test's own, dropped afterwards."""
    name = unique_name("ruche_t")
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres.url(name)
    with psycopg.connect(postgres.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class MigratedTemplates:
    """A migrated database made once per test process, copied for each test: the copy
    (a file copy, or PostgreSQL's CREATE DATABASE ... TEMPLATE) takes a fraction of the
    time of running every migration again."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._sqlite: Path | None = None
        self._postgres: tuple[PostgresServer, str] | None = None

    def sqlite(self, destination: Path) -> str:
        if self._sqlite is None:
            self._sqlite = self.directory / "template.db"
            run_migrations(f"sqlite:///{self._sqlite}")
        shutil.copyfile(self._sqlite, destination)
        return f"sqlite:///{destination}"

    def postgres(self, server: PostgresServer, database: str) -> str:
        if self._postgres is None:
            name = unique_name("ruche_template")
            with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            run_migrations(server.url(name))
            self._postgres = (server, name)
        with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}" TEMPLATE "{self._postgres[1]}"')
        return server.url(database)

    def drop(self) -> None:
        if self._postgres is not None:
            server, name = self._postgres
            with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MigratedTemplates]:
    templates = MigratedTemplates(tmp_path_factory.mktemp("templates"))
    yield templates
    templates.drop()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(
    request: pytest.FixtureRequest, tmp_path: Path, migrated: MigratedTemplates
) -> Iterator[str]:
    """The same test on a SQLite file and on a PostgreSQL database of its own, migrated
    (copies of a database migrated once per test process)."""
    if request.param == "sqlite":
        yield migrated.sqlite(tmp_path / "ruche.db")
        return
    server: PostgresServer = request.getfixturevalue("postgres")
    name = unique_name("ruche_t")
    yield migrated.postgres(server, name)
    with psycopg.connect(server.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn(postgres: PostgresServer, pg_url: str) -> str:
    """The libpq DSN of the same per-test database as `pg_url`."""
    return postgres.dsn(pg_url.rsplit("/", 1)[1])


# --- the registry -----------------------------------------------------------------


def _register_devices(
    url: str,
    site: str,
    *,
    desks: Mapping[str, Iterable[str]] = MappingProxyType({}),
    doors: Mapping[str, Iterable[str]] = MappingProxyType({}),
) -> None:
    """Put `site` in the registry at `url` (migrated) with each agent's desks and doors:
    the server counts an agent's events only for devices the registry gives it. The site
    and its agents are made when missing."""
    engine = make_engine(url)
    try:
        with make_sessions(engine).begin() as session:
            builder = SiteBuilder(session, site, existing=True)
            zone = unique_name("zone-")
            for agent in sorted({*desks, *doors}):
                builder.agent(agent, desks=desks.get(agent, ()), doors=doors.get(agent, ()),
                              zone=zone)  # fmt: skip
    finally:
        engine.dispose()


@pytest.fixture
def register_devices() -> Callable[..., None]:
    """`register_devices(url, site, desks={agent: [desk, ...]}, doors={agent: [door, ...]})`:
    the registry a test's events need (see `_register_devices`)."""
    return _register_devices
