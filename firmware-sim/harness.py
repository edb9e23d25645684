"""A whole agent on a laptop: broker, stand-in server, simulated radars and badges, and
`ruche edge run` as its own process. Used by the end-to-end tests and `ruche bench edge`
(the demo plays whole agents' days with `ruche.sim.day_player` instead).

```python
with AgentHarness(workdir, radars=4) as harness:
    harness.start_agent()
    ...
    produced, acked = harness.outbox()
```
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal

from ruche.broker import Channel, EventPayload, decode_payload
from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.mosquitto_config import BrokerOptions
from ruche.broker.passwords import generate_password
from ruche.sim.ld2410 import Arrive, Empty, Leave, PtyRadar, Scenario, Seated
from ruche.sim.nfc import BadgeEmulator
from ruche.sim.receiver import EventReceiver
from ruche.sim.services.mosquitto import MosquittoProcess
from ruche.sim.services.sockets import free_port

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from ruche.server.occupancy.ingest import IngestWorker

SITE, AGENT = "lab", "agent-a"
SITE_KEY = "00112233445566778899aabbccddeeff"
BADGES = (bytes.fromhex("0114b3c2d1e0f001"), bytes.fromhex("0114b3c2d1e0f002"))


def busy_desk(seconds: float, seed: int) -> Scenario:
    """A desk taken and left again every ten seconds: far busier than a real one."""
    cycle = (Empty(2.0), Arrive(1.0), Seated(4.0), Leave(1.0), Empty(2.0))
    return Scenario(steps=cycle * (int(seconds // 10) + 1), seed=seed)


class Tapper:
    """Taps badges at a reader every `every` seconds, in a thread."""

    def __init__(self, device: str, every: float) -> None:
        self.emulator = BadgeEmulator(device=device)
        self.every = every
        self.taps = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tapper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        self.emulator.close()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.emulator.tap(BADGES[self.taps % 2], hold_s=1.3)
            self.taps += 1


@dataclass(frozen=True)
class ProcessSample:
    """CPU seconds used so far and resident memory, read from /proc."""

    cpu_s: float
    rss_mb: float
    peak_rss_mb: float


def sample_process(pid: int) -> ProcessSample:
    """Read a process's CPU time (user + system) and RSS from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )

    def mb(key: str) -> float:
        return int(status[key].split()[0]) / 1024

    return ProcessSample(cpu_s=cpu, rss_mb=mb("VmRSS"), peak_rss_mb=mb("VmHWM"))


class AgentHarness:
    """Everything around one agent process, in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        *,
        radars: int = 2,
        seconds: float = 60.0,
        tap_every: float = 3.0,
        port: int | None = None,
        server: Literal["stand-in", "ingest"] = "stand-in",
    ) -> None:
        """`server`: who stores and acks the agent's events. `stand-in`: the receiver
        (`ruche.sim.receiver`); `ingest`: the server's own ingestion, in this process, on
        SQLite in `workdir`, its registry giving the agent its door and desks."""
        self.workdir = workdir
        self.state_dir = workdir / "state"
        self.config = workdir / "agent.toml"
        agent = AgentAccount(site=SITE, id=AGENT, password=generate_password())
        self.accounts = Accounts(
            server=ServerAccount(password=generate_password()), agents=(agent,)
        )
        options = None if port is None else BrokerOptions(port=port)
        self.broker = MosquittoProcess.generate(workdir / "broker", self.accounts, options)
        self.reader = f"udp:127.0.0.1:{free_port()}"
        self.radars = [
            PtyRadar(busy_desk(seconds, seed=i), link=workdir / f"radar-{i}") for i in range(radars)
        ]
        self.tap_every = tap_every
        self.receiver = EventReceiver(
            host=self.broker.host,
            port=self.broker.port,
            username=self.accounts.server.username,
            password=self.accounts.server.password.get_secret_value(),
            site=SITE,
        )
        self.tapper: Tapper | None = None
        self.agent: subprocess.Popen[bytes] | None = None
        self.server = server
        self.database_url = f"sqlite:///{workdir / 'ruche.db'}"
        self._ingest: IngestWorker | None = None
        self._engine: Engine | None = None
        self._write_config(agent)

    def start(self) -> None:
        """Broker, receiver, radars and badge tapper; then `start_agent()`."""
        self.broker.start()
        if self.server == "stand-in":
            self.receiver.start()
        elif self.server == "ingest":
            self._start_ingest(self.database_url)
        for radar in self.radars:
            radar.start()
        self.tapper = Tapper(self.reader, every=self.tap_every)
        self.tapper.start()

    def start_agent(self) -> subprocess.Popen[bytes]:
        with (self.workdir / "agent.log").open("ab") as log:
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "ruche", "edge", "run", "--config", str(self.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self.agent

    @property
    def taps(self) -> int:
        return 0 if self.tapper is None else self.tapper.taps

    def stop_tapping(self) -> None:
        if self.tapper is not None:
            self.tapper.stop()

    def kill_agent(self) -> None:
        """SIGKILL: no goodbye, no flush beyond what the outbox already holds."""
        if self.agent is not None:
            os.kill(self.agent.pid, signal.SIGKILL)
            self.agent.wait()

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.terminate()
            self.agent.wait(15)

    def outbox(self) -> tuple[int, int]:
        """(highest seq produced, highest seq acked), read from the agent's own database."""
        path = self.state_dir / "outbox.db"
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return int(meta["next_seq"]) - 1, int(meta["acked_seq"])

    def stop(self) -> None:
        self.stop_tapping()
        for radar in self.radars:
            radar.stop()
        self.stop_agent()
        if self._ingest is not None:
            self._ingest.stop()
        if self._engine is not None:
            self._engine.dispose()
        if self.server == "stand-in":
            self.receiver.stop()
        self.broker.stop()

    def stored(self) -> list[EventPayload]:
        """Every event the server side stored, in (agent, seq) order."""
        if self.server == "stand-in":
            return [e.payload for e in self.receiver.snapshot()]
        # The server's stack is imported only when a real server is asked for: the
        # simulator alone (ruche-coworking[sim]) does not have it.
        from sqlalchemy import select  # noqa: PLC0415
        from sqlalchemy.orm import Session  # noqa: PLC0415

        from ruche.server.storage.db import make_engine  # noqa: PLC0415
        from ruche.server.storage.models import StoredEventRow  # noqa: PLC0415

        query = select(StoredEventRow.channel, StoredEventRow.payload).order_by(StoredEventRow.seq)
        engine = self._engine or make_engine(self.database_url)
        try:
            with Session(engine) as session:
                rows = session.execute(query).all()
        finally:
            if engine is not self._engine:
                engine.dispose()
        return [decode_payload(Channel(ch), raw.encode()) for ch, raw in rows]  # type: ignore[misc]

    def _start_ingest(self, url: str) -> None:
        from ruche.server.messaging.connection import MqttOptions  # noqa: PLC0415
        from ruche.server.occupancy.ingest import IngestWorker  # noqa: PLC0415
        from ruche.server.storage.db import make_engine, make_sessions, run_migrations  # noqa: PLC0415

        run_migrations(url)
        self._engine = make_engine(url)
        self._register(make_sessions(self._engine))
        server = self.accounts.server
        options = MqttOptions(
            host=self.broker.host,
            port=self.broker.port,
            username=server.username,
            password=server.password.get_secret_value(),
        )
        self._ingest = IngestWorker(make_sessions(self._engine), options, site=SITE)
        self._ingest.start()

    def _register(self, sessions: sessionmaker[Session]) -> None:
        """The site, the agent, its door and its desks, as the agent's config has them: the
        server counts an agent's events only for devices the registry gives it."""
        from ruche.sim.testing.sites import SiteBuilder  # noqa: PLC0415 - the server's stack

        with sessions.begin() as session:
            site = SiteBuilder(session, SITE, name="Lab")
            site.agent(AGENT, doors=["front"], desks=[f"desk-{i}" for i in range(len(self.radars))],
                       zone="lab")  # fmt: skip

    def __enter__(self) -> AgentHarness:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _write_config(self, agent: AgentAccount) -> None:
        desks = "".join(
            f'\n[[desks]]\nid = "desk-{i}"\nserial = "{self.workdir / f"radar-{i}"}"\n'
            "arrive_s = 0.5\nleave_s = 1.0\n"
            for i in range(len(self.radars))
        )
        self.config.write_text(
            f"""site = "{SITE}"
agent = "{AGENT}"
site_key = "{SITE_KEY}"
state_dir = "{self.state_dir}"
gpio = "mock"
request_timeout_ms = 300

[mqtt]
host = "{self.broker.host}"
port = {self.broker.port}
username = "{agent.username}"
password = "{agent.password.get_secret_value()}"
resend_after_s = 1.0

[[doors]]
id = "front"
reader = "{self.reader}"
relay_pin = 17
contact_pin = 27
{desks}""",
            encoding="utf-8",
        )
