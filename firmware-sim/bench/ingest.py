"""`ruche bench ingest`: presence events at a fixed rate through a real broker, server and
InfluxDB, and how many of them landed.

Starts its own Mosquitto (generated config), InfluxDB (`influxd`, a private data
directory) and `ruche server run` (SQLite in a temporary directory unless
`--database` names another, free ports), seeds a site with many agents and desks,
then publishes presence events from every agent at QoS 1 at the target rate, from
a few publisher processes, as the agents would: each agent its own MQTT account,
its own seq, and the event time as the point's time.

Lag is from publishing an event to the agent receiving the server's `ack` covering
it: the moment the event is durable (committed in SQL, its point in the disk spool),
which is when the agent may forget it. After the last ack the bench waits for the
spool to drain into InfluxDB, then counts there: `stored` is the number of points
InfluxDB holds for the run, `duplicates` the points beyond one per (agent, seq), and
`lost` the events sent with no point.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path

import httpx
from sqlalchemy import func, select

from ruche.broker import Ack, Presence, PresenceState, Topic, decode, encode_for
from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount, agent_username
from ruche.broker.passwords import generate_password
from ruche.broker.topics import Channel
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.models import StoredEventRow
from ruche.sim.bench.mqtt_load import LoadConnection
from ruche.sim.services.influxd import InfluxdProcess
from ruche.sim.services.mosquitto import MosquittoProcess
from ruche.sim.services.sockets import free_port
from ruche.sim.testing.sites import SiteBuilder

SITE = "bench"
DATABASE = "ruche_bench"
DRAIN_TIMEOUT_S = 300.0
"""How long the bench waits for the pipeline to catch up once publishing stops."""
RESEND_CHECK_S = 0.1
RESEND_AFTER_S = 5.0
"""Acks stalled this long with events waiting: resend them, as the edge agent would."""
TICK_S = 0.005
"""How often a publisher writes what is due: a system call per agent per tick rather
than per event, as a busy agent's MQTT client coalesces writes. At 10,000 events a
second each of the two publishers took about 31 % of a core with a 1 ms tick, 20 %
with this one: CPU the broker and the server under test need."""
LAG_WINDOW_S = 10.0
"""The span of each `lag_p99_ms_by_10s` figure."""
HEARTBEATS_PER_CHANGE = 4
"""Presence traffic is mostly heartbeats: a desk repeats its state between changes."""


class BenchError(RuntimeError):
    """The bench could not run (a process did not start); the message says where to look."""


@dataclass
class IngestBenchResult:
    sent: int
    stored: int
    lost: int
    duplicates: int
    acked: int
    resent: int
    """Events sent again because their acks stalled (the server dedupes them)."""
    rate_target: float
    rate_achieved: float
    seconds: float
    lag_p50_ms: float
    lag_p99_ms: float
    lag_max_ms: float
    lag_p99_ms_by_10s: list[float]
    """The lag p99 of the events sent in each 10 s of the run: where the pipeline fell
    behind, and whether it caught up."""
    drain_s: float
    """From the last publish to the last point counted in InfluxDB."""
    stored_sql: int
    """Events in SQL's `events` table: one per (agent, seq), or the count is wrong."""
    server_rss_mb: float
    """The server processes' peak resident memory, summed."""
    server_cpu_s: float
    workers: int
    agents: int
    desks: int
    database: str
    faults: list[str] = field(default_factory=list)
    """What the bench did to the pipeline while publishing, with when."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class Faults:
    """What to break mid-stream, in seconds from the first publish."""

    influx_down_at: float | None = None
    influx_down_for: float = 60.0
    kill_worker_at: float | None = None
    """SIGKILL one `server ingest` child (needs workers >= 2); the server restarts it."""


@dataclass(frozen=True)
class BenchPlan:
    rate: float
    seconds: float
    agents: int
    desks_per_agent: int
    publishers: int
    workers: int
    faults: Faults = Faults()

    @property
    def total(self) -> int:
        return round(self.rate * self.seconds)


# --- the publishers (each its own process) ----------------------------------------------


@dataclass(frozen=True)
class _Share:
    host: str
    port: int
    agents: tuple[tuple[str, str], ...]
    """(agent id, password) of the agents this publisher plays."""
    desks_per_agent: int
    events: int
    rate: float


class _AgentStream:
    """One simulated agent: its connection, its seq, when each event left, what was acked."""

    def __init__(self, host: str, port: int, agent: str, password: str, desks: int) -> None:
        self.agent = agent
        self.desks = [f"{agent}-desk-{d}" for d in range(desks)]
        self.topics = [str(Topic.presence(SITE, agent, desk)).encode() for desk in self.desks]
        self.sent_at = array("d", [0.0])  # index = seq
        self.lags = array("f")
        self.acked = 0
        self.resent = 0
        self._sent: list[tuple[bytes, bytes]] = [(b"", b"")]  # (topic, payload) by seq
        self._progress_at = time.monotonic()
        self._resend_from = 0
        self.held = 0
        """Publishes that waited for the broker's in-flight window."""
        self._last_ts: list[datetime | None] = [None] * desks
        self.connection = LoadConnection(
            host,
            port,
            client_id=agent_username(SITE, agent),
            username=agent_username(SITE, agent),
            password=password,
            subscription=str(Topic.ack(SITE, agent)),
            on_message=self._on_message,
        )

    @property
    def seq(self) -> int:
        return len(self.sent_at) - 1

    def publish(self) -> bool:
        """Publish the next event; False if the broker's in-flight window is full."""
        seq = self.seq + 1
        index = seq % len(self.desks)
        now = datetime.now(UTC)
        # Points are keyed by their time: two events of one desk never share a microsecond.
        last = self._last_ts[index]
        if last is not None and now <= last:
            now = last + timedelta(microseconds=1)
        turn = seq // len(self.desks)
        occupied = (turn // (HEARTBEATS_PER_CHANGE + 1)) % 2 == 0
        event = Presence(
            seq=seq,
            ts=now,
            mono=time.monotonic(),
            state=PresenceState.OCCUPIED if occupied else PresenceState.VACANT,
            heartbeat=turn % (HEARTBEATS_PER_CHANGE + 1) != 0,
            confidence=0.9,
        )
        payload = encode_for(Channel.PRESENCE, event)
        if not self.connection.publish(self.topics[index], payload):
            self.held += 1
            return False
        self._last_ts[index] = now
        self.sent_at.append(time.perf_counter())
        self._sent.append((self.topics[index], payload))
        return True

    def resend_stalled(self, now: float) -> None:
        """As the agent's outbox does: when acks stop moving while events wait, send again
        everything from the first unacked one (a server process that died took the
        broker's copies with it). The server drops what it already has."""
        if self.acked >= self.seq:
            self._progress_at = now
            return
        if self._resend_from <= self.acked:
            if now - self._progress_at < RESEND_AFTER_S:
                return
            self._resend_from = self.acked + 1
        while self._resend_from <= self.seq:
            topic, payload = self._sent[self._resend_from]
            if not self.connection.publish(topic, payload):
                return
            self._resend_from += 1
            self.resent += 1
        self._progress_at = now

    def _on_message(self, topic: str, payload: bytes) -> None:
        arrived = time.perf_counter()
        ack = decode(topic, payload).payload
        if not isinstance(ack, Ack):
            return
        top = min(ack.seq, self.seq)
        for seq in range(self.acked + 1, top + 1):
            self.lags.append(arrived - self.sent_at[seq])
        if top > self.acked:
            self.acked = top
            self._progress_at = time.monotonic()


class _Pump:
    """A publisher's connections: resend where acks stalled, write what is queued, and
    read only the connections with something to read (trying forty idle sockets every
    millisecond cost the publisher more than publishing)."""

    def __init__(self, streams: list[_AgentStream]) -> None:
        self.streams = streams
        self.selector = selectors.DefaultSelector()
        for stream in streams:
            self.selector.register(stream.connection.sock, selectors.EVENT_READ, stream)
        self.checked = time.monotonic()

    def run(self, wait: float) -> None:
        self.flush()
        self.read(wait)

    def flush(self) -> None:
        now = time.monotonic()
        if now - self.checked >= RESEND_CHECK_S:
            for stream in self.streams:
                stream.resend_stalled(now)
            self.checked = now
        for stream in self.streams:
            stream.connection.flush()

    def read(self, wait: float) -> None:
        for key, _ in self.selector.select(timeout=max(0.0, wait)):
            key.data.connection.receive()


def _publish_share(share: _Share, go: float, out: Connection) -> None:
    """A publisher process: connect its agents, wait for `go`, publish at its rate, wait for
    the acks, and send back (sent, acked, seconds, lags)."""
    streams = [
        _AgentStream(share.host, share.port, agent, password, share.desks_per_agent)
        for agent, password in share.agents
    ]
    try:
        out.send("ready")
        while time.time() < go:
            time.sleep(0.001)
        pump = _Pump(streams)
        start = next_tick = time.perf_counter()
        sent = turn = 0
        while sent < share.events:
            now = time.perf_counter()
            if now >= next_tick:
                due = min(share.events, int((now - start) * share.rate) + 1)
                while sent < due:
                    if not streams[turn % len(streams)].publish():
                        break  # that agent's window is full: let the broker catch up
                    sent += 1
                    turn += 1
                pump.flush()
                next_tick = now + TICK_S
            pump.read(next_tick - time.perf_counter())
        elapsed = time.perf_counter() - start
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while any(s.acked < s.seq for s in streams) and time.monotonic() < deadline:
            pump.run(0.005)
        lags = array("f")
        offsets = array("f")
        for stream in streams:
            lags.extend(stream.lags)
            # Acks arrive in seq order: the i-th lag is of seq i + 1.
            offsets.extend(t - start for t in stream.sent_at[1 : len(stream.lags) + 1])
        resent = sum(s.resent for s in streams)
        acked = sum(s.acked for s in streams)
        out.send((sent, acked, elapsed, lags.tobytes(), resent, offsets.tobytes()))
    finally:
        for stream in streams:
            stream.connection.close()
        out.close()


# --- the run -------------------------------------------------------------------------------


def run_ingest_bench(
    *,
    rate: float = 10_000,
    seconds: float = 60,
    agents: int = 40,
    desks_per_agent: int = 50,
    publishers: int = 2,
    workers: int = 1,
    database_url: str | None = None,
    faults: Faults | None = None,
    progress: bool = False,
) -> IngestBenchResult:
    """Start everything, publish, drain, count; see the module docstring."""
    plan = BenchPlan(
        rate, seconds, agents, desks_per_agent, publishers, workers, faults or Faults()
    )
    if plan.faults.kill_worker_at is not None and workers < 2:
        raise BenchError("killing a worker needs --workers 2 or more")
    with tempfile.TemporaryDirectory(prefix="ruche-bench-ingest-") as tmp:
        workdir = Path(tmp)
        accounts = Accounts(
            server=ServerAccount(password=generate_password()),
            agents=tuple(
                AgentAccount(site=SITE, id=f"agent-{i}", password=generate_password())
                for i in range(agents)
            ),
        )
        url = database_url or f"sqlite:///{workdir / 'ruche.db'}"
        run_migrations(url)
        _seed(url, plan)
        with (
            InfluxdProcess(workdir / "influx") as influxd,
            MosquittoProcess.generate(workdir / "broker", accounts) as broker,
            _servers(workdir, url, broker, influxd, accounts, workers) as servers,
        ):
            rig = _Rig(broker, influxd, servers, accounts, url, workdir)
            return _measure(plan, rig, progress=progress)


def _seed(url: str, plan: BenchPlan) -> None:
    engine = make_engine(url)
    try:
        with transaction(make_sessions(engine)) as session:
            site = SiteBuilder(session, SITE, name="Bench")
            for i in range(plan.agents):
                agent = f"agent-{i}"
                site.agent(agent)
                for d in range(plan.desks_per_agent):
                    site.desk(f"{agent}-desk-{d}", agent=agent, x=d, y=i)
    finally:
        engine.dispose()


@dataclass(frozen=True)
class _Rig:
    broker: MosquittoProcess
    influxd: InfluxdProcess
    servers: list[subprocess.Popen[bytes]]
    accounts: Accounts
    url: str
    workdir: Path


@contextlib.contextmanager
def _servers(  # noqa: PLR0917 - the rig's parts, in the order they start
    workdir: Path,
    url: str,
    broker: MosquittoProcess,
    influxd: InfluxdProcess,
    accounts: Accounts,
    workers: int,
) -> Iterator[list[subprocess.Popen[bytes]]]:
    config = workdir / "server.toml"
    http_port = free_port()
    config.write_text(
        f'database_url = "{url}"\n'
        f'[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'username = "{accounts.server.username}"\n'
        f'password = "{accounts.server.password.get_secret_value()}"\n'
        f"[http]\nport = {http_port}\n"
        f'[influx]\nurl = "{influxd.url}"\ndatabase = "{DATABASE}"\n'
        f'spool_dir = "{workdir / "spool"}"\n',
        encoding="utf-8",
    )
    command = [sys.executable, "-m", "ruche", "server", "run", "--config", str(config),
               "--log-level", "WARNING"]  # fmt: skip
    if workers > 1:
        command += ["--workers", str(workers)]
    with (workdir / "server.log").open("ab") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
    try:
        _wait_until_serving(server, http_port, workdir / "server.log")
        yield [server]
    finally:
        server.terminate()
        try:
            server.wait(60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _measure(plan: BenchPlan, rig: _Rig, *, progress: bool) -> IngestBenchResult:
    context = multiprocessing.get_context("spawn")
    shares = _shares(plan, rig.broker, rig.accounts)
    go = time.time() + 3.0 + 0.05 * plan.agents
    pipes: list[Connection] = []
    processes = []
    for share in shares:
        ours, theirs = context.Pipe(duplex=False)
        process = context.Process(target=_publish_share, args=(share, go, theirs), daemon=True)
        process.start()
        theirs.close()
        pipes.append(ours)
        processes.append(process)
    for pipe in pipes:
        if not pipe.poll(60) or pipe.recv() != "ready":
            raise BenchError("a publisher could not connect its agents to the broker")
    if progress:
        _say(f"publishing {plan.total} events at {plan.rate:g}/s for {plan.seconds:g} s")
    saboteur = _Saboteur(plan.faults, rig, go, say=_say if progress else None)
    saboteur.start()
    results = []
    for pipe in pipes:
        if not pipe.poll(plan.seconds + DRAIN_TIMEOUT_S + 60):
            raise BenchError("a publisher never finished")
        results.append(pipe.recv())
    for process in processes:
        process.join(10)
    saboteur.join()
    published_at = time.monotonic()
    sent = sum(r[0] for r in results)
    acked = sum(r[1] for r in results)
    resent = sum(r[4] for r in results)
    elapsed = max(r[2] for r in results)
    lags = array("f")
    offsets = array("f")
    for r in results:
        lags.frombytes(r[3])
        offsets.frombytes(r[5])
    if progress:
        _say(f"sent {sent}, acked {acked}; waiting for InfluxDB to hold every point")
    stored, distinct = _drain(rig.influxd, sent, progress=progress)
    drain_s = time.monotonic() - published_at
    ms = sorted(x * 1000 for x in lags)
    rss, cpu = _server_usage(rig.servers)
    return IngestBenchResult(
        sent=sent,
        stored=stored,
        lost=sent - distinct,
        duplicates=stored - distinct,
        acked=acked,
        resent=resent,
        rate_target=plan.rate,
        rate_achieved=round(sent / elapsed, 1) if elapsed else 0.0,
        seconds=round(elapsed, 2),
        lag_p50_ms=_percentile(ms, 0.50),
        lag_p99_ms=_percentile(ms, 0.99),
        lag_max_ms=round(ms[-1], 1) if ms else 0.0,
        lag_p99_ms_by_10s=_p99_by_window(offsets, lags, LAG_WINDOW_S),
        drain_s=round(drain_s, 2),
        stored_sql=_sql_count(rig.url),
        server_rss_mb=rss,
        server_cpu_s=cpu,
        workers=plan.workers,
        agents=plan.agents,
        desks=plan.agents * plan.desks_per_agent,
        database=rig.url.split(":", 1)[0],
        faults=saboteur.done,
    )


class _Saboteur(threading.Thread):
    """Breaks the pipeline on schedule while the publishers run."""

    def __init__(
        self, faults: Faults, rig: _Rig, go: float, *, say: Callable[[str], None] | None
    ) -> None:
        super().__init__(name="bench-faults", daemon=True)
        self.faults, self.rig, self.go, self.say = faults, rig, go, say
        self.done: list[str] = []

    def run(self) -> None:
        steps: list[tuple[float, str]] = []
        if self.faults.influx_down_at is not None:
            steps.append((self.faults.influx_down_at, "influx_down"))
            steps.append((self.faults.influx_down_at + self.faults.influx_down_for, "influx_up"))
        if self.faults.kill_worker_at is not None:
            steps.append((self.faults.kill_worker_at, "kill_worker"))
        for at, what in sorted(steps):
            time.sleep(max(0.0, self.go + at - time.time()))
            detail = self._do(what)
            self.done.append(f"{at:g}s {what}{detail}")
            if self.say is not None:
                self.say(f"fault at {at:g} s: {what}{detail}")

    def _do(self, what: str) -> str:
        if what == "influx_down":
            self.rig.influxd.stop()
            return ""
        if what == "influx_up":
            self.rig.influxd.start()
            return ""
        victims = [
            pid
            for server in self.rig.servers
            for pid in _children(server.pid)
            if b"ingest" in _cmdline(pid)
        ]
        if not victims:
            return " (no ingest child found)"
        os.kill(victims[0], signal.SIGKILL)
        return f" (pid {victims[0]})"


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _sql_count(url: str) -> int:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return int(
                connection.scalar(
                    select(func.count())
                    .select_from(StoredEventRow)
                    .where(StoredEventRow.site == SITE)
                )
                or 0
            )
    finally:
        engine.dispose()


def _shares(plan: BenchPlan, broker: MosquittoProcess, accounts: Accounts) -> list[_Share]:
    groups: list[list[AgentAccount]] = [[] for _ in range(plan.publishers)]
    for i, account in enumerate(accounts.agents):
        groups[i % plan.publishers].append(account)
    total, shares = plan.total, []
    for i, group in enumerate(g for g in groups if g):
        events = total // plan.publishers + (1 if i < total % plan.publishers else 0)
        shares.append(
            _Share(
                host=broker.host,
                port=broker.port,
                agents=tuple((a.id, a.password.get_secret_value()) for a in group),
                desks_per_agent=plan.desks_per_agent,
                events=events,
                rate=plan.rate / plan.publishers,
            )
        )
    return shares


def _wait_until_serving(server: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Until the server answers HTTP: it subscribes its workers before it serves."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise BenchError(f"the server exited at start: see {log}")
        with contextlib.suppress(httpx.HTTPError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return
        time.sleep(0.2)
    raise BenchError(f"the server did not start in 120 s: see {log}")


def _drain(influxd: InfluxdProcess, sent: int, *, progress: bool) -> tuple[int, int]:
    """Poll InfluxDB until it holds a point per event or stops growing; (points, distinct)."""
    last, still_since = -1, time.monotonic()
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        stored, distinct = _count(influxd.url)
        if distinct >= sent:
            return stored, distinct
        if stored != last:
            last, still_since = stored, time.monotonic()
            if progress:
                _say(f"InfluxDB holds {stored} points")
        elif time.monotonic() - still_since > 30:
            break
        time.sleep(1)
    return _count(influxd.url)


def _count(url: str) -> tuple[int, int]:
    """Points of the bench site in InfluxDB, and distinct (agent, seq) among them."""
    query = (
        "SELECT count(seq), count(distinct(seq)) FROM presence WHERE site = 'bench' GROUP BY agent"
    )
    try:
        response = httpx.get(f"{url}/query", params={"db": DATABASE, "q": query}, timeout=60)
        response.raise_for_status()
    except httpx.HTTPError:
        return 0, 0
    stored = distinct = 0
    for series in response.json().get("results", [{}])[0].get("series", []):
        for row in series.get("values", []):
            stored += int(row[1])
            distinct += int(row[2])
    return stored, distinct


def _server_usage(servers: list[subprocess.Popen[bytes]]) -> tuple[float, float]:
    """(peak RSS in MB, CPU seconds) of the server processes and their children."""
    rss_kb = 0
    ticks = 0
    pids = {s.pid for s in servers}
    for pid in list(pids):
        pids.update(_children(pid))
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    rss_kb += int(line.split()[1])
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return round(rss_kb / 1024, 1), round(ticks / os.sysconf("SC_CLK_TCK"), 1)


def _children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
        return [int(p) for p in text.split()]
    return []


def _p99_by_window(offsets: array[float], lags: array[float], window: float) -> list[float]:
    """The p99 lag in ms of the events sent in each `window` seconds from the start."""
    windows: dict[int, list[float]] = {}
    for offset, lag in zip(offsets, lags, strict=True):
        windows.setdefault(max(0, int(offset // window)), []).append(lag * 1000)
    last = max(windows, default=-1)
    return [_percentile(sorted(windows.get(i, [])), 0.99) for i in range(last + 1)]


def _percentile(sorted_ms: list[float], q: float) -> float:
    if not sorted_ms:
        return 0.0
    return round(sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * q))], 1)


def _say(text: str) -> None:
    sys.stderr.write(f"{text}\n")
    sys.stderr.flush()
