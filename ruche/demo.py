"""`ruche demo`: Ruche running on one machine, as far as it is built.

Today: a Mosquitto broker on Ruche's generated configuration; a private InfluxDB
when one is installed; the server (`ruche server run`: event ingestion with acks
and InfluxDB points, door decisions, allow-lists, the audit log and the REST API)
on SQLite with a seeded site; and one agent
(`ruche edge run`) with two simulated LD2410 desk radars on ptys and a door whose
NFC reader sees a badge every few seconds over nfcpy's UDP driver (Ada's, who may
come in, and Bob's, which was revoked). It prints how to watch the traffic and
use the API, a progress line, and a summary; it stops cleanly on Ctrl-C, SIGTERM
or after `--duration`.
"""

from __future__ import annotations

import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType

import httpx

from ruche import __version__
from ruche.broker import everything
from ruche.broker.mosquitto import MosquittoError
from ruche.ports import free_port, wait_for_port
from ruche.server.influxd import InfluxdError, InfluxdProcess
from ruche.sim.harness import AGENT, SITE, AgentHarness

FOREVER_S = 7 * 24 * 3600.0
PROGRESS_EVERY_S = 5.0
RADARS = 2
INFLUX_DATABASE = "ruche"


class DemoError(RuntimeError):
    """Something the demo needs did not start; the message says what and where to look."""


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - the demo talks to the person running it


def run_demo(*, duration: float | None, directory: Path | None, port: int | None) -> int:
    """Run until Ctrl-C, SIGTERM or `duration` seconds; return the exit status."""
    # Handlers first: a Ctrl-C while things start must still stop everything cleanly.
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(stop, duration=duration, directory=directory, port=port)
    except (MosquittoError, DemoError) as exc:
        print(f"ruche demo: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(
    stop: threading.Event, *, duration: float | None, directory: Path | None, port: int | None
) -> int:
    from ruche.sim.demo_site import seed_demo_site  # noqa: PLC0415 - imports the server

    with tempfile.TemporaryDirectory(prefix="ruche-demo-") as tmp:
        workdir = (directory or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        harness = AgentHarness(
            workdir, radars=RADARS, seconds=duration or FOREVER_S, port=port, server="external"
        )
        server: subprocess.Popen[bytes] | None = None
        influxd = _influxd(workdir)
        try:
            api_key = seed_demo_site(harness.database_url, desks=RADARS)
            harness.start()
            if influxd is not None:
                influxd.start()
            if stop.is_set():
                return 0
            server, api = _start_server(harness, workdir, influxd)
            harness.start_agent()
            _serve(harness, api=api, api_key=api_key, duration=duration, stop=stop,
                   influxd=influxd)  # fmt: skip
            return 0
        finally:
            harness.stop_agent()
            if server is not None:
                server.terminate()
                server.wait(30)
            harness.stop()
            if influxd is not None:
                influxd.stop()
            _say("stopped the agent, the server, the simulated hardware and the broker; bye")


def _influxd(workdir: Path) -> InfluxdProcess | None:
    """A private InfluxDB when the machine has one installed; the demo runs without it."""
    try:
        return InfluxdProcess(workdir / "influxd")
    except InfluxdError:
        _say("influxd is not installed: running without InfluxDB (apt-get install influxdb)")
        return None


def _start_server(
    harness: AgentHarness, workdir: Path, influxd: InfluxdProcess | None
) -> tuple[subprocess.Popen[bytes], str]:
    http_port = free_port()
    account = harness.accounts.server
    config = workdir / "server.toml"
    influx = (
        ""
        if influxd is None
        else f'[influx]\nurl = "{influxd.url}"\ndatabase = "{INFLUX_DATABASE}"\n'
        f'spool_dir = "{workdir / "spool"}"\n'
    )
    config.write_text(
        f'database_url = "{harness.database_url}"\n'
        f'[mqtt]\nhost = "{harness.broker.host}"\nport = {harness.broker.port}\n'
        f'username = "{account.username}"\n'
        f'password = "{account.password.get_secret_value()}"\n'
        f"[http]\nport = {http_port}\n{influx}",
        encoding="utf-8",
    )
    log_path = workdir / "server.log"
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "ruche", "server", "run", "--config", str(config)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    if not wait_for_port("127.0.0.1", http_port, timeout=60) or server.poll() is not None:
        server.kill()
        server.wait()
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise DemoError(f"the server did not start; {log_path} says:\n{tail}")
    return server, f"http://127.0.0.1:{http_port}"


def _serve(
    harness: AgentHarness,
    *,
    api: str,
    api_key: str,
    duration: float | None,
    stop: threading.Event,
    influxd: InfluxdProcess | None,
) -> None:
    broker, account = harness.broker, harness.accounts.server
    watch = shlex.join(
        [
            "mosquitto_sub", "-V", "mqttv5", "-h", broker.host, "-p", str(broker.port),
            "-u", account.username, "-P", account.password.get_secret_value(),
            "-t", everything(), "-v",
        ]
    )  # fmt: skip
    _say(f"ruche {__version__} demo")
    _say(f"broker: Mosquitto on {broker.host}:{broker.port}, config in {broker.files.directory}")
    _say(f"server: {api} (API docs at {api}/docs), {harness.database_url}; "
         f"log in {harness.workdir / 'server.log'}")  # fmt: skip
    _say(f"agent:  {SITE}/{AGENT}, {RADARS} desks (LD2410 radars on ptys), door 'front' "
         f"(NFC reader {harness.reader}); log in {harness.workdir / 'agent.log'}")  # fmt: skip
    if influxd is not None:
        _say(f"influx: {influxd.url}, database {INFLUX_DATABASE!r} (presence, door_tap, "
             "door_event measurements)")  # fmt: skip
    _say("badges: Ada's (allowed) and Bob's (revoked) are tapped in turn every 3 s")
    _say(f"watch the traffic:\n  {watch}")
    _say(f"live floor page: {api}/  (log in with the admin key below)")
    _say(f"use the API (admin key, shown once):\n  curl -H 'Authorization: Bearer {api_key}' "
         f"{api}/audit")  # fmt: skip
    _say("stop with Ctrl-C" + (f" (or wait {duration:g} s)" if duration else ""))
    started = time.monotonic()
    deadline = None if duration is None else started + duration
    while not stop.is_set():
        remaining = PROGRESS_EVERY_S if deadline is None else deadline - time.monotonic()
        if remaining <= 0 or stop.wait(min(PROGRESS_EVERY_S, remaining)):
            break
        _say(f"{time.monotonic() - started:6.0f} s  {_counts(harness, influxd)}")
    _say(f"summary after {time.monotonic() - started:.0f} s: {_counts(harness, influxd)}")


def _points(influxd: InfluxdProcess | None) -> str:
    if influxd is None:
        return ""
    try:
        response = httpx.get(f"{influxd.url}/query", timeout=5, params={
            "db": INFLUX_DATABASE, "q": "SELECT count(occupied) FROM presence"})  # fmt: skip
        series = response.json()["results"][0].get("series") or [{"values": [[0, 0]]}]
        return f"; {series[0]['values'][0][1]} presence points in InfluxDB"
    except (httpx.HTTPError, ValueError, KeyError, IndexError):
        return "; InfluxDB not answering"


def _counts(harness: AgentHarness, influxd: InfluxdProcess | None = None) -> str:
    from sqlalchemy import func, select  # noqa: PLC0415
    from sqlalchemy.orm import Session  # noqa: PLC0415

    from ruche.server.db import make_engine  # noqa: PLC0415
    from ruche.server.models import AuditKind, AuditRow, StoredEvent  # noqa: PLC0415

    engine = make_engine(harness.database_url)
    try:
        with Session(engine) as session:
            kinds = dict(
                session.execute(
                    select(StoredEvent.kind, func.count()).group_by(StoredEvent.kind)
                ).all()
            )
            decisions = dict(
                session.execute(
                    select(AuditRow.allowed, func.count())
                    .where(AuditRow.kind == AuditKind.DECISION)
                    .group_by(AuditRow.allowed)
                ).all()
            )
    finally:
        engine.dispose()
    produced, acked = harness.outbox()
    parts = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
    return (
        f"{sum(kinds.values())} events stored ({parts or 'none yet'}); door decisions: "
        f"{decisions.get(True, 0)} allowed, {decisions.get(False, 0)} denied; "
        f"{produced - acked} waiting in the agent's outbox{_points(influxd)}"
    )
