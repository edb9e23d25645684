"""`ruche bench access`: tap-to-unlock-command latency through a real broker and server.

Starts its own Mosquitto (generated config) and `ruche server run` (SQLite in a
temporary directory, free ports), seeds a site whose members cover every outcome
(24/7 plan, booking-only with and without a booking, inactive member, revoked,
disabled and unknown badges), then taps from several agents at once, as doors do:
one tap at a time per door, each an MQTT v5 request. Latency is from publishing
the tap to receiving the `unlock` or `deny` on the agent's `cmd` topic; a wrong
decision is an answer other than the one the seed implies.

With `oversized_bodies=N`, N unauthenticated requests of 32 MB each (half with a
`Content-Length`, half chunked) are sent to the server's API while the doors tap, one
connection each, spread over the run: the result then also says how many were refused
(413) and the server's resident memory, idle and at its highest during the run.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from sqlalchemy.orm import Session

from ruche.broker import Deny, Tap, Topic, Unlock, decode, encode_for
from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.passwords import generate_password
from ruche.broker.tokens import badge_token
from ruche.broker.topics import Channel
from ruche.mqtt import no_delay, publish_properties, stop_client
from ruche.server import registry
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import BadgeStatus
from ruche.sim.services.mosquitto import MosquittoProcess
from ruche.sim.services.sockets import free_port
from ruche.sim.testing.sites import SiteBuilder

SITE = "bench"
ANSWER_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Expected:
    allowed: bool
    reason: str


@dataclass
class AccessBenchResult:
    taps: int
    agents: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    wrong_decisions: int
    unanswered: int
    allowed: int
    denied: int
    reasons: dict[str, int] = field(default_factory=dict)
    oversized_bodies: int = 0
    oversized_refused: int = 0
    """How many the server refused before reading them, as its `/metrics` counts them."""
    server_rss_mb_idle: float = 0.0
    """The server's resident memory after the warm-up, before the taps."""
    server_rss_mb_max: float = 0.0
    """Its highest, sampled every 20 ms while the doors tapped."""

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def seed(url: str, *, agents: int, members: int) -> dict[str, Expected]:
    """A site covering every outcome; returns the expected answer per badge token."""
    now = datetime.now(UTC)
    expected: dict[str, Expected] = {}
    with transaction(make_sessions(make_engine(url))) as session:
        site = SiteBuilder(session, SITE, name="Bench")
        resident = site.plan("resident")
        flex = site.plan("flex", booking_only=True)
        for i in range(agents):
            site.agent(f"agent-{i}", doors=[f"door-{i}"])
        key = registry.site_key_of(session, site.id)
        for i in range(members):
            kind = i % 7
            uid = i.to_bytes(8, "big")
            if kind == 5:  # never enrolled
                expected[badge_token(bytes(key.key), uid)] = Expected(False, "unknown_badge")
                continue
            email = f"m{i}@bench.example"
            member = site.member(f"Member {i}", email, plan=flex if kind in (1, 2) else resident,
                                 badge=uid)  # fmt: skip
            token = site.tokens[email]
            if kind == 0:
                expected[token] = Expected(allowed=True, reason="schedule")
            elif kind == 1:
                desk = site.desk(f"desk-{i}")
                registry.book(session, member_id=member, site_id=site.id, desk_id=desk,
                              starts_at=now - timedelta(hours=1),
                              ends_at=now + timedelta(hours=8))  # fmt: skip
                expected[token] = Expected(allowed=True, reason="booking")
            elif kind == 2:
                expected[token] = Expected(allowed=False, reason="no_booking")
            elif kind == 3:
                registry.update_member(session, member, active=False)
                expected[token] = Expected(allowed=False, reason="member_inactive")
            elif kind == 4:
                registry.revoke_badge(session, _badge_id(session, token))
                expected[token] = Expected(allowed=False, reason="badge_revoked")
            else:
                registry.set_badge_status(session, _badge_id(session, token), BadgeStatus.DISABLED)
                expected[token] = Expected(allowed=False, reason="badge_disabled")
    return expected


def _badge_id(session: Session, token: str) -> int:
    return registry.get_badge_by_token(session, token).id


class Door:
    """One simulated door: an agent's MQTT client tapping one badge at a time."""

    def __init__(self, host: str, port: int, account: AgentAccount, door: str) -> None:
        self.account, self.door = account, door
        self.cmd = str(Topic.cmd(account.site, account.id))
        self.tap_topic = str(Topic.tap(account.site, account.id, door))
        self._answers: dict[str, tuple[float, Unlock | Deny]] = {}
        self._arrived = threading.Condition()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=account.client_id, protocol=mqtt.MQTTv5
        )
        self.client.username_pw_set(account.username, account.password.get_secret_value())
        self.client.on_socket_open = no_delay
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_connect = lambda client, *_: client.subscribe(self.cmd, qos=1)
        self.client.connect(host, port)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise TimeoutError(f"{account.username} could not subscribe to {self.cmd}")

    def tap(self, token: str, seq: int) -> tuple[float, Unlock | Deny] | None:
        """Tap and wait for the answer; (latency in seconds, answer) or None on timeout."""
        request_id = uuid.uuid4().hex
        tap = Tap(seq=seq, ts=datetime.now(UTC), mono=time.monotonic(), token=token,
                  reader=f"{self.door}-in", request_id=request_id)  # fmt: skip
        payload = encode_for(Channel.TAP, tap)
        props = publish_properties(response_topic=self.cmd, correlation=request_id.encode())
        sent = time.perf_counter()
        self.client.publish(self.tap_topic, payload, qos=1, properties=props)
        with self._arrived:
            if not self._arrived.wait_for(lambda: request_id in self._answers, ANSWER_TIMEOUT_S):
                return None
            arrived, answer = self._answers.pop(request_id)
        return arrived - sent, answer

    def close(self) -> None:
        stop_client(self.client)

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        arrived = time.perf_counter()
        answer = decode(msg.topic, msg.payload).payload
        if isinstance(answer, Unlock | Deny) and answer.request_id:
            with self._arrived:
                self._answers[answer.request_id] = (arrived, answer)
                self._arrived.notify_all()


def run_access_bench(
    *, taps: int = 5000, agents: int = 4, members: int = 70, oversized_bodies: int = 0
) -> AccessBenchResult:
    """Start a broker and a server, seed, tap, and measure."""
    with tempfile.TemporaryDirectory(prefix="ruche-bench-access-") as tmp:
        workdir = Path(tmp)
        accounts = Accounts(
            server=ServerAccount(password=generate_password()),
            agents=tuple(
                AgentAccount(site=SITE, id=f"agent-{i}", password=generate_password())
                for i in range(agents)
            ),
        )
        url = f"sqlite:///{workdir / 'ruche.db'}"
        run_migrations(url)
        expected = seed(url, agents=agents, members=members)
        with MosquittoProcess.generate(workdir / "broker", accounts) as broker:
            server, http_port = start_server(workdir, url, broker, accounts)
            doors: list[Door] = []
            try:
                doors = [Door(broker.host, broker.port, a, f"door-{i}")
                         for i, a in enumerate(accounts.agents)]  # fmt: skip
                _warm_up(doors[0], next(iter(expected)))
                memory = RssSampler(server.pid)
                flood = BodyFlood("127.0.0.1", http_port, oversized_bodies)
                with memory, flood:
                    result = _tap_all(doors, expected, taps)
                result.oversized_bodies = oversized_bodies
                result.oversized_refused = _refused_bodies("127.0.0.1", http_port)
                result.server_rss_mb_idle = memory.first_mb
                result.server_rss_mb_max = memory.max_mb
                return result
            finally:
                for door in doors:
                    door.close()
                server.terminate()
                server.wait(30)


def start_server(
    workdir: Path, url: str, broker: MosquittoProcess, accounts: Accounts
) -> tuple[subprocess.Popen[bytes], int]:
    """`ruche server run` on `url`, and the port of its API."""
    config = workdir / "server.toml"
    http_port = free_port()
    config.write_text(
        f'database_url = "{url}"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
        f'username = "{accounts.server.username}"\n'
        f'password = "{accounts.server.password.get_secret_value()}"\n'
        f"[http]\nport = {http_port}\n",
        encoding="utf-8",
    )
    log = (workdir / "server.log").open("ab")
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "ruche", "server", "run", "--config", str(config),
             "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ},
        )  # fmt: skip
    finally:
        log.close()
    return process, http_port


OVERSIZED_BYTES = 32 * 1024 * 1024
_CHUNK = b"x" * (64 * 1024)


class BodyFlood:
    """`count` unauthenticated POSTs of 32 MB to the API, each on its own connection and
    thread, started over the first `spread_s` seconds of a `with` block."""

    def __init__(self, host: str, port: int, count: int, *, spread_s: float = 1.0) -> None:
        self.host, self.port, self.count = host, port, count
        self._spread_s = spread_s
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> BodyFlood:
        for i in range(self.count):
            delay = self._spread_s * i / max(self.count, 1)
            thread = threading.Thread(
                target=self._send, kwargs={"declared": i % 2 == 0, "delay": delay}, daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *_exc: object) -> None:
        for thread in self._threads:
            thread.join(timeout=60)

    def _send(self, *, declared: bool, delay: float) -> None:
        time.sleep(delay)
        head = f"POST /members HTTP/1.1\r\nHost: {self.host}\r\nContent-Type: application/json\r\n"
        head += (f"Content-Length: {OVERSIZED_BYTES}\r\n" if declared
                 else "Transfer-Encoding: chunked\r\n")  # fmt: skip
        # The server answers and hangs up mid-body: that ends the attempt, as it should.
        with (
            contextlib.suppress(OSError),
            socket.create_connection((self.host, self.port), timeout=30) as sock,
        ):
            sock.sendall((head + "\r\n").encode())
            _send_body(sock, declared=declared)
            sock.recv(64)


def _refused_bodies(host: str, port: int) -> int:
    """`ruche_http_body_refused_total` summed over its reasons, from the server's /metrics."""
    text = httpx.get(f"http://{host}:{port}/metrics", timeout=10).text
    return int(sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ruche_http_body_refused_total{")
    ))  # fmt: skip


def _send_body(sock: socket.socket, *, declared: bool) -> None:
    """Send the 32 MB until done, or until the server answers or hangs up."""
    sent = 0
    while sent < OVERSIZED_BYTES:
        readable, _, _ = select.select([sock], [], [], 0)
        if readable:
            return  # an answer came before the body was all sent: stop, as a client would
        chunk = _CHUNK if declared else b"%x\r\n%s\r\n" % (len(_CHUNK), _CHUNK)
        sock.sendall(chunk)
        sent += len(_CHUNK)
    if not declared:
        sock.sendall(b"0\r\n\r\n")


class RssSampler:
    """A process's resident memory, sampled every 20 ms while the `with` block runs."""

    def __init__(self, pid: int, *, every_s: float = 0.02) -> None:
        self._status = Path(f"/proc/{pid}/status")
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.first_mb = self.max_mb = self._read_mb()

    def _read_mb(self) -> float:
        for line in self._status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
        return 0.0

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                self.max_mb = max(self.max_mb, self._read_mb())
            except OSError:
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _warm_up(door: Door, token: str) -> None:
    """Wait until the server answers (it migrates and connects first), and warm its cache."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if door.tap(token, seq=1) is not None:
            for seq in range(2, 22):
                door.tap(token, seq=seq)
            return
    raise TimeoutError("the server never answered a tap: see server.log in the bench directory")


def _tap_all(doors: list[Door], expected: dict[str, Expected], taps: int) -> AccessBenchResult:
    tokens = list(expected)
    latencies: list[float] = []
    wrong = unanswered = 0
    reasons: dict[str, int] = {}
    lock = threading.Lock()

    def run(door: Door, share: int, offset: int) -> None:
        nonlocal wrong, unanswered
        for n in range(share):
            token = tokens[(offset + n * len(doors)) % len(tokens)]
            outcome = door.tap(token, seq=1000 + n)
            with lock:
                if outcome is None:
                    unanswered += 1
                    continue
                latency, answer = outcome
                latencies.append(latency)
                allowed = isinstance(answer, Unlock)
                reason = answer.reason if isinstance(answer, Deny) else "unlock"
                reasons[reason] = reasons.get(reason, 0) + 1
                if allowed != expected[token].allowed or (
                    not allowed and reason != expected[token].reason
                ):
                    wrong += 1

    shares = [taps // len(doors) + (1 if i < taps % len(doors) else 0) for i in range(len(doors))]
    threads = [threading.Thread(target=run, args=(d, s, i)) for i, (d, s) in
               enumerate(zip(doors, shares, strict=True))]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ms = sorted(x * 1000 for x in latencies)
    return AccessBenchResult(
        taps=taps,
        agents=len(doors),
        p50_ms=round(statistics.median(ms), 2) if ms else 0.0,
        p99_ms=round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 2) if ms else 0.0,
        max_ms=round(ms[-1], 2) if ms else 0.0,
        wrong_decisions=wrong,
        unanswered=unanswered,
        allowed=reasons.get("unlock", 0),
        denied=sum(n for r, n in reasons.items() if r != "unlock"),
        reasons=dict(sorted(reasons.items())),
    )
