"""`ruche demo`: a whole coworking day on one machine.

What runs, each in `--dir` (or a temporary directory):

- **The broker**, on Ruche's generated configuration, with an account per simulated agent
  and one for the server: Mosquitto (`make demo` installs it), as on a site.
- **InfluxDB** (`influxd` 1.x), private, when installed; the demo runs without it.
- **The server**, `ruche server run` on SQLite, its registry seeded with the site of
  `ruche.sim.demo.plan` (`ruche.sim.demo.site`): 40 desks in three zones, two doors,
  members on the four kinds of plan with price versions, badges (one revoked).
- **The agents**: `ruche.sim.day_player.play_day` plays today as `ruche.sim.day.plan_day`
  plans it, as the site's four agents, each on its own MQTT connection with acks.

Which day, and why. The server decides doors and releases no-show bookings by the real
clock, while the simulated clock runs `speed` times faster:

- The day is today in the site's timezone, played from its opening (07:30) to its
  closing (21:00); the night's heartbeats go at once. Every plan opens the doors 24/7 to
  memberships begun two months ago, so a tap's answer depends on the badge alone (the
  revoked one is refused) whenever the demo runs.
- A booking is released when its desk saw nobody by its start plus 15 minutes, by the
  real clock. A booking whose deadline the simulated clock passes well before the real
  one (`demo_plan.books_ahead`) is made through the API when the day starts, so the
  floor page shows it booked. The others, in the real clock's past when the demo runs
  later in the day, are made through the API once the day has been played past their
  deadline and every event up to then is stored: the server never releases a booking
  whose member's events are still to come. Those the day never reaches (`--duration`,
  Ctrl-C) are made in SQL at the end.

At the end (closing time, `duration` seconds of play, or Ctrl-C/SIGTERM) the demo waits
until the server has stored, decided and written to InfluxDB all it was sent, stops it,
refreshes occupancy once at the simulated clock's time (sessions, visits, no-shows),
and reports what the stores hold (`ruche.sim.demo.report`), with an invoice preview.
"""

from __future__ import annotations

import json
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import httpx
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from ruche import __version__
from ruche.broker import Channel, everything
from ruche.broker.accounts import Accounts, AgentAccount, ServerAccount
from ruche.broker.mosquitto_config import BrokerOptions
from ruche.broker.passwords import generate_password
from ruche.server.occupancy.refresh import refresh_site
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.sim.day import MEASUREMENTS, PlannedBooking
from ruche.sim.day_player import DayPlayError, DayProgress, play_day
from ruche.sim.demo.plan import (
    MAX_DESKS,
    MIN_DESKS,
    PLANS,
    SITE,
    DemoDay,
    DemoSite,
    cut,
    deadline,
    demo_day,
    demo_site,
    split_bookings,
)
from ruche.sim.demo.report import (
    decisions,
    events,
    influx_points,
    invoice_preview,
    store_counts,
    summary_lines,
)
from ruche.sim.demo.site import SeededSite, add_bookings, seed_demo_site
from ruche.sim.services.influxd import InfluxdError, InfluxdProcess
from ruche.sim.services.mosquitto import MosquittoError, MosquittoProcess
from ruche.sim.services.sockets import free_port, wait_for_port

__all__ = [
    "SEED",
    "Console",
    "Demo",
    "DemoError",
    "DemoUsageError",
    "Played",
    "run_demo",
]

SEED = 2026
INFLUX_DATABASE = "ruche"
SETTLE_S = 60.0
"""How long the end waits for the server to store and write what it was sent."""


class DemoError(RuntimeError):
    """Something the demo needs did not start or answer; the message says what and where."""


class DemoUsageError(DemoError):
    """The demo cannot run as asked (exit status 2): the message says what to change."""


class _Stopped(Exception):  # noqa: N818 - a signal, not an error
    """Ctrl-C or SIGTERM during the day: out of `play_day`."""


class Console:
    """Where the demo talks: stdout, or stderr when stdout carries the JSON summary.

    On a terminal the progress line is rewritten in place; elsewhere it is a line every
    few seconds.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.every = 0.5 if self.tty else 5.0
        self._open = False

    def say(self, text: str) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def progress(self, text: str) -> None:
        if not self.tty:
            self.say(text)
            return
        self.stream.write("\r" + text + "\x1b[K")
        self.stream.flush()
        self._open = True


@dataclass(frozen=True)
class Played:
    """How far the day went."""

    until: datetime
    """The simulated clock at the end (UTC)."""
    complete: bool
    """Played to closing time."""
    interrupted: bool
    sent: int
    acked: int
    planned: int
    """Events of the day up to where it was to stop."""
    elapsed_s: float


class Demo:
    """One demo run in `workdir`: `start()`, `play()`, `finish()`, and always `close()`.

    Tests drive it directly: `influxd` is the private InfluxDB (None when not installed),
    to stop and start again while the day plays; `api` the server's base URL.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        speed: float,
        console: Console,
        desks: int = 40,
        port: int | None = None,
        day: date | None = None,
    ) -> None:
        """`day`: the local date to play (default: today at the site when started)."""
        self.workdir = workdir
        self.speed = speed
        self.console = console
        self.site: DemoSite = demo_site(desks)
        agents = tuple(
            AgentAccount(site=SITE, id=agent, password=generate_password())
            for agent in self.site.layout.agents
        )
        self.accounts = Accounts(server=ServerAccount(password=generate_password()), agents=agents)
        options = BrokerOptions(port=port or free_port())
        self.broker = MosquittoProcess.generate(workdir / "broker", self.accounts, options)
        self.influxd: InfluxdProcess | None
        try:
            self.influxd = InfluxdProcess(workdir / "influxd")
        except InfluxdError:
            self.influxd = None
        self.date = day
        self.day: DemoDay | None = None
        self.seeded: SeededSite | None = None
        self.api = ""
        self._server: subprocess.Popen[bytes] | None = None
        self._engine: Engine | None = None
        self._unmade: list[PlannedBooking] = []

    @property
    def manager_key(self) -> str:
        return "" if self.seeded is None else self.seeded.manager_key

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.workdir / 'ruche.db'}"

    # --- starting --------------------------------------------------------------------------

    def start(self, stop: threading.Event) -> bool:
        """Broker, InfluxDB, registry, server; False when `stop` was set meanwhile."""
        self.broker.start()
        if self.influxd is not None and not stop.is_set():
            self.influxd.start()
        if stop.is_set():
            return False
        now = datetime.now(UTC)
        today = self.date or now.astimezone(self.site.tz).date()
        self.day = demo_day(self.site, today, seed=SEED)
        self.seeded = seed_demo_site(self.database_url, self.site, day=today, now=now)
        if stop.is_set():
            return False
        self._start_server(stop)
        return not stop.is_set()

    def _start_server(self, stop: threading.Event) -> None:
        http_port = free_port()
        account = self.accounts.server
        config = self.workdir / "server.toml"
        influx = (
            ""
            if self.influxd is None
            else f'[influx]\nurl = "{self.influxd.url}"\ndatabase = "{INFLUX_DATABASE}"\n'
            f'spool_dir = "{self.workdir / "spool"}"\n'
        )
        config.write_text(
            f'database_url = "{self.database_url}"\n'
            f'[mqtt]\nhost = "{self.broker.host}"\nport = {self.broker.port}\n'
            f'username = "{account.username}"\n'
            f'password = "{account.password.get_secret_value()}"\n'
            f"[http]\nport = {http_port}\n{influx}",
            encoding="utf-8",
        )
        log_path = self.workdir / "server.log"
        with log_path.open("ab") as log:
            self._server = subprocess.Popen(
                [sys.executable, "-m", "ruche", "server", "run", "--config", str(config)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline_at = time.monotonic() + 60
        while not stop.is_set() and self._server.poll() is None:
            if wait_for_port("127.0.0.1", http_port, timeout=0.5):
                self.api = f"http://127.0.0.1:{http_port}"
                return
            if time.monotonic() > deadline_at:
                break
        if stop.is_set():
            return
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise DemoError(f"the server did not start; {log_path} says:\n{tail}")

    def introduce(self, *, duration: float | None = None) -> None:
        """What runs where, and how to look at it."""
        assert self.day is not None  # noqa: S101 - started
        assert self.seeded is not None  # noqa: S101
        broker, account, say = self.broker, self.accounts.server, self.console.say
        site, day = self.site, self.day
        watch = shlex.join(
            ["mosquitto_sub", "-V", "mqttv5", "-h", broker.host, "-p", str(broker.port),
             "-u", account.username, "-P", account.password.get_secret_value(),
             "-t", everything(), "-v"]
        )  # fmt: skip
        local = day.plan.day
        length = (day.end - day.begin).total_seconds() / self.speed
        stopping = f"about {length / 60:.0f} min" if length >= 120 else f"about {length:.0f} s"
        if duration is not None and duration < length:
            at = day.begin + timedelta(seconds=duration * self.speed)
            stopping = f"stopping after {duration:g} s, at {_hhmm(at, site)}"
        say(f"ruche {__version__} demo: a day at {site.name!r} ({SITE}), {local}, "
            f"{site.layout.timezone}")  # fmt: skip
        where = f"{broker.host}:{broker.port}"
        line = f"broker:    Mosquitto on {where}, config in {broker.files.directory}"
        if shutil.which("mosquitto_sub") is not None:
            line += f"; watch the traffic:\n  {watch}"
        say(line)
        if self.influxd is None:
            say("influxdb:  influxd is not installed, running without InfluxDB "
                "(apt-get install influxdb)")  # fmt: skip
        else:
            say(f"influxdb:  {self.influxd.url}, database {INFLUX_DATABASE!r}")
        say(f"server:    {self.api} (API docs at {self.api}/docs) on {self.database_url}; "
            f"log in {self.workdir / 'server.log'}")  # fmt: skip
        say(f"health:    {self.api}/readyz  metrics: {self.api}/metrics")
        say(f"site:      {len(site.desks)} desks in {', '.join(site.zones)}; doors "
            f"{' and '.join(d.door for d in site.layout.doors)}; {len(site.members)} members "
            f"on {len(PLANS)} plans; {len(day.plan.bookings)} desk bookings today")  # fmt: skip
        seeded = self.seeded
        say(f"live page: {self.api}/  (sign in as the manager below)")
        say(
            f"sign in:   {self.api}/signin as {seeded.manager_email} (manager) or "
            f"{seeded.member_email} (member), password (shown once): {seeded.password}"
        )
        say(f"manager key (shown once): {self.manager_key}\n"
            f"use the API: curl -H 'Authorization: Bearer {self.manager_key}' "
            f"'{self.api}/bookings?site_id={self.seeded.site_id}'")  # fmt: skip
        say(f"day:       {_hhmm(day.begin, site)} to {_hhmm(day.end, site)} at {self.speed:g}x "
            f"({stopping}); stop with Ctrl-C")  # fmt: skip

    # --- the day ---------------------------------------------------------------------------

    def play(self, stop: threading.Event, *, duration: float | None = None) -> Played:
        """Play the day until closing, `duration` seconds, or `stop`."""
        assert self.day is not None  # noqa: S101 - started
        day = self.day
        until = day.end
        if duration is not None:
            until = min(until, day.begin + timedelta(seconds=duration * self.speed))
        plan = cut(day.plan, until)
        ahead, later = split_bookings(day.plan.bookings, begin=day.begin,
                                      started=datetime.now(UTC), speed=self.speed,
                                      grace_minutes=self.site.no_show_minutes)  # fmt: skip
        with httpx.Client(base_url=self.api, timeout=30, headers={
                "Authorization": f"Bearer {self.manager_key}"}) as client:  # fmt: skip
            self.book(client, ahead)
            player = _Player(self, client, stop, later)
            started = time.monotonic()
            try:
                play_day(plan, host=self.broker.host, port=self.broker.port,
                         accounts=self.accounts.agents, speed=self.speed, begin=day.begin,
                         on_progress=player, progress_every=0.25)  # fmt: skip
                interrupted = False
            except _Stopped:
                interrupted = True
            except DayPlayError as exc:
                raise DemoError(f"the day could not be played: {exc} (the server's log is "
                                f"{self.workdir / 'server.log'})") from exc  # fmt: skip
            if player.last is not None:
                self.console.progress(self.progress_line(player.last, client))
        self._unmade = player.later
        last = player.last
        return Played(
            until=last.clock.astimezone(UTC) if interrupted and last else until,
            complete=not interrupted and until == day.end,
            interrupted=interrupted,
            sent=last.sent if last else 0,
            acked=last.acked if last else 0,
            planned=plan.total,
            elapsed_s=time.monotonic() - started,
        )

    def book(self, client: httpx.Client, bookings: list[PlannedBooking]) -> None:
        """Book through the API, as a manager booking for members."""
        ids = self.seeded
        assert ids is not None  # noqa: S101 - started
        for b in bookings:
            response = client.post("/bookings", json={
                "member_id": ids.members[b.member], "site_id": ids.site_id,
                "desk_id": ids.desks[b.desk], "starts_at": b.start.isoformat(),
                "ends_at": b.end.isoformat()})  # fmt: skip
            if response.status_code != httpx.codes.CREATED:
                raise DemoError(f"booking {b.desk} for {b.member} was refused: "
                                f"{response.status_code} {response.text}")  # fmt: skip

    def progress_line(self, progress: DayProgress, client: httpx.Client) -> str:
        """The simulated clock, events, door decisions, desks occupied (the live floor's)."""
        with Session(self.engine) as session:
            doors = decisions(session, SITE)
        occupied = "?"
        try:
            state = client.get("/live/state").json()
            occupied = str(next(s["headcount"] for s in state["sites"] if s["site"] == SITE))
        except (httpx.HTTPError, ValueError, KeyError, StopIteration):
            pass
        return (
            f"{progress.clock:%H:%M}  events {progress.sent:,} sent, {progress.acked:,} acked "
            f"(of {progress.total:,})  doors {doors['allowed']} allowed, {doors['denied']} "
            f"denied  desks {occupied}/{len(self.site.desks)} occupied"
        )

    # --- the end ---------------------------------------------------------------------------

    def finish(self, played: Played) -> dict[str, Any]:
        """Let the server store and write what it was sent, stop it, refresh occupancy at the
        simulated clock's time, and return the summary of what the stores hold."""
        assert self.day is not None  # noqa: S101 - started
        self._settle(played)
        self._stop_server()
        add_bookings(self.database_url, SITE, self._unmade)
        self._unmade = []
        with transaction(make_sessions(self.engine)) as session:
            refresh_site(session, SITE, now=played.until)
        with Session(self.engine) as session:
            counts = store_counts(session, SITE)
            invoices = invoice_preview(session, SITE, self.day.plan.day)
        return {
            "site": SITE,
            "played": {
                "day": self.day.plan.day.isoformat(),
                "timezone": self.site.layout.timezone,
                "from": _hhmm(self.day.begin, self.site),
                "to": _hhmm(played.until, self.site),
                "until": played.until.isoformat(),
                "complete": played.complete,
                "interrupted": played.interrupted,
                "speed": self.speed,
                "elapsed_s": round(played.elapsed_s, 1),
                "planned": played.planned,
                "sent": played.sent,
                "acked": played.acked,
            },
            "events": counts.events,
            "door_decisions": counts.decisions,
            "sessions": counts.sessions,
            "visits": counts.visits,
            "bookings": counts.bookings,
            "points": self._points(),
            "invoices": invoices,
            "broker": "mosquitto",
            "database_url": self.database_url,
            "influxdb": None if self.influxd is None else self.influxd.url,
            "api": self.api,
        }

    def _settle(self, played: Played) -> None:
        """Until SQL holds every acked event, each tap is decided, and InfluxDB holds a point
        per stored event (or `SETTLE_S` passed: the summary then says what is there)."""

        def sql() -> tuple[dict[str, int], int]:
            with Session(self.engine) as session:
                return events(session, SITE), sum(decisions(session, SITE).values())

        deadline_at = time.monotonic() + SETTLE_S
        before: tuple[dict[str, int], int] | None = None
        while time.monotonic() < deadline_at:
            stored, decided = sql()
            steady = stored == (before or ({}, 0))[0]
            before = (stored, decided)
            if (
                sum(stored.values()) >= played.acked
                and decided >= stored.get("tap", 0)
                and (steady or not played.interrupted)
            ):
                break
            time.sleep(0.5)
        if self.influxd is None or before is None:
            return
        wanted = {MEASUREMENTS[Channel(c)]: n for c, n in before[0].items()}
        while time.monotonic() < deadline_at:
            points = self._points() or {}
            if all(points.get(m, 0) >= n for m, n in wanted.items()):
                return
            time.sleep(0.5)

    def _points(self) -> dict[str, int] | None:
        if self.influxd is None:
            return None
        try:
            return influx_points(self.influxd.url, INFLUX_DATABASE)
        except (httpx.HTTPError, ValueError, KeyError, IndexError):
            return None

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is None or server.poll() is not None:
            return
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    def close(self) -> None:
        """Stop whatever runs; safe at any point."""
        self._stop_server()
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self.influxd is not None:
            self.influxd.stop()
        self.broker.stop()


def _hhmm(moment: datetime, site: DemoSite) -> str:
    return f"{moment.astimezone(site.tz):%H:%M}"


class _Player:
    """`play_day`'s progress hook: the progress line, bookings made once the day has been
    played past them, and Ctrl-C."""

    def __init__(
        self, demo: Demo, client: httpx.Client, stop: threading.Event, later: list[PlannedBooking]
    ) -> None:
        self.demo = demo
        self.client = client
        self.stop = stop
        self.later = sorted(later, key=lambda b: b.start)
        self.last: DayProgress | None = None
        self._shown = 0.0

    def __call__(self, progress: DayProgress) -> None:
        self.last = progress
        if self.stop.is_set():
            raise _Stopped
        if self.later and progress.acked == progress.released:
            # Every event up to the clock is stored: the server judges these on what happened.
            grace = self.demo.site.no_show_minutes
            due = [b for b in self.later if deadline(b, grace) <= progress.clock]
            if due:
                self.demo.book(self.client, due)
                self.later = [b for b in self.later if b not in due]
        now = time.monotonic()
        if now - self._shown >= self.demo.console.every:
            self._shown = now
            self.demo.console.progress(self.demo.progress_line(progress, self.client))


@contextmanager
def _workdir(directory: Path | None) -> Iterator[Path]:
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="ruche-demo-") as tmp:
            yield Path(tmp)
        return
    workdir = directory.resolve()
    if (workdir / "ruche.db").exists():
        raise DemoUsageError(
            f"{workdir} already holds a demo's data (ruche.db): give a new or empty directory"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    yield workdir


def run_demo(
    *,
    speed: float = 120.0,
    duration: float | None = None,
    directory: Path | None = None,
    port: int | None = None,
    desks: int = 40,
    json_summary: bool = False,
) -> int:
    """Run the demo; return the exit status (2: it cannot run here as asked)."""
    if not MIN_DESKS <= desks <= MAX_DESKS:
        return _refuse(f"--desks must be {MIN_DESKS} to {MAX_DESKS}, not {desks}")
    console = Console(sys.stderr if json_summary else sys.stdout)
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second Ctrl-C: do not wait for the summary
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with _workdir(directory) as workdir:
            summary = _run(console, stop, workdir, speed=speed, duration=duration, port=port,
                           desks=desks)  # fmt: skip
            if summary is not None and json_summary:
                print(json.dumps(summary))  # noqa: T201 - the command's output
            if directory is not None:
                console.say(f"data kept in {workdir}")
            console.say("stopped the agents, the server, InfluxDB and the broker; bye")
            return 0
    except DemoUsageError as exc:
        return _refuse(str(exc))
    except (MosquittoError, InfluxdError, DemoError) as exc:
        print(f"ruche demo: {exc}", file=sys.stderr)  # noqa: T201
        return 1
    except KeyboardInterrupt:
        print("ruche demo: interrupted; everything it started is stopped", file=sys.stderr)  # noqa: T201
        return 130
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _refuse(reason: str) -> int:
    print(f"ruche demo: {reason}", file=sys.stderr)  # noqa: T201
    return 2


def _run(
    console: Console,
    stop: threading.Event,
    workdir: Path,
    *,
    speed: float,
    duration: float | None,
    port: int | None,
    desks: int,
) -> dict[str, Any] | None:
    demo = Demo(workdir, speed=speed, console=console, desks=desks, port=port)
    try:
        if not demo.start(stop):
            return None
        demo.introduce(duration=duration)
        played = demo.play(stop, duration=duration)
        ended = "the day is over" if played.complete else "stopped"
        console.say(f"{ended} at {_hhmm(played.until, demo.site)}; waiting for the server to "
                    "store everything sent, then a summary")  # fmt: skip
        summary = demo.finish(played)
    finally:
        demo.close()
    terms = {p.name: p.terms for p in PLANS}
    for line in summary_lines(summary, terms):
        console.say(line)
    return summary
