"""`ruche edge run`: build the agent from its config and run it until told to stop.

Under systemd (`NOTIFY_SOCKET` set, `ruche edge install` writes the unit) the agent says
READY=1 once it has started, WATCHDOG=1 every half watchdog period while its threads are
alive, and STOPPING=1 when it stops. Without `NOTIFY_SOCKET` it just waits for a signal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from systemd_watchdog import WatchDog

from ruche.broker.accounts import agent_username
from ruche.edge.agent import Agent
from ruche.edge.settings import AgentSettings, load_settings

log = logging.getLogger(__name__)

HANG_FILE_ENV = "RUCHE_EDGE_HANG_FILE"
"""Test hook: while the file this variable names exists, the main loop blocks and pings
nothing, which is what a hung agent looks like to systemd's watchdog
(tests/e2e/test_watchdog.py). Unset in production."""

_HANG_POLL_S = 0.1


def pin_factory_for(settings: AgentSettings) -> object | None:
    """gpiozero's pin factory: the Pi's own by default, mock pins on a laptop."""
    if settings.gpio == "mock":
        from gpiozero.pins.mock import MockFactory  # noqa: PLC0415 - only off a Pi

        factory: object = MockFactory()
        return factory
    return None


def expected_threads(agent: Agent) -> frozenset[str]:
    """The threads a started agent keeps running, by the names their modules give them: the
    link's network thread (paho's, named for the client id) and outbox sender, the thread
    applying the server's configs (when it takes them), each door's deadline worker and
    badge reader, each desk's radar or PIR reader, as the agent is wired now."""
    settings = agent.settings
    names = {"outbox-sender", f"paho-mqtt-client-{agent_username(settings.site, settings.agent)}"}
    if agent.remote is not None:
        names.add("remote-config")
    doors, desks = agent.wiring()
    for door in doors:
        names |= {f"door-{door.relay_pin}", f"nfc-reader-{door.id}-reader"}
    for desk in desks:
        names.add(f"radar-{desk.id}" if desk.serial is not None else f"pir-{desk.id}")
        if desk.reader is not None:
            names.add(f"nfc-reader-{desk.id}-reader")
    return frozenset(names)


def stalled_threads(agent: Agent) -> list[str]:
    """Those of `expected_threads` that are not running: an exception ended them, and the
    part they serve (the link, a door, a reader, a desk) is dead until a restart. A part
    being rewired may be missing for a moment: that skips one ping of the two per period."""
    alive = {thread.name for thread in threading.enumerate() if thread.is_alive()}
    return sorted(expected_threads(agent) - alive)


class Systemd:
    """The agent's side of sd_notify(3): a no-op without `NOTIFY_SOCKET`."""

    def __init__(self) -> None:
        self._address = os.environ.get("NOTIFY_SOCKET") or None
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._watchdog = WatchDog(sock=self._socket, addr=self._address)
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self._watchdog.is_enabled

    @property
    def ping_every(self) -> float:
        """Half the watchdog period (WATCHDOG_USEC), as sd_watchdog_enabled(3) advises;
        half a day when the unit has no watchdog, where pings are ignored anyway."""
        return self._watchdog.timeout_td.total_seconds() / 2

    def ready(self) -> None:
        with self._failures("READY=1"):
            self._watchdog.ready()
            # The watchdog is armed from READY=1 on: the first ping goes with it.
            self._watchdog.notify()

    def ping(self) -> None:
        with self._failures("WATCHDOG=1"):
            # notify(), not the library's ping(): ping() skips when less than half the
            # period has passed, and a loop waking every half period would skip every other.
            self._watchdog.notify()

    def status(self, text: str) -> None:
        with self._failures("STATUS="):
            self._watchdog.status(text)

    def stopping(self) -> None:
        # The library has no STOPPING=1; it goes out on its socket, to its address.
        if self._address is not None:
            abstract = self._address.startswith("@")
            address = "\0" + self._address[1:] if abstract else self._address
            with self._failures("STOPPING=1"):
                self._socket.sendto(b"STOPPING=1\n", address)

    @contextlib.contextmanager
    def _failures(self, what: str) -> Iterator[None]:
        # As sd_notify(3) does, a socket that cannot be reached (a NOTIFY_SOCKET inherited
        # from elsewhere, a manager gone) is reported, never a reason for the doors to stop.
        try:
            yield
        except OSError as exc:
            # Once: a Pi's SD card must not fill with a line per ping.
            level = logging.DEBUG if self._failed else logging.WARNING
            self._failed = True
            log.log(level, "could not tell systemd %s through %s: %s", what, self._address, exc)

    def close(self) -> None:
        self._socket.close()


def _hang_while_told(hang_file: Path | None, stop: threading.Event) -> None:
    """The test hook of HANG_FILE_ENV: block while the file exists (or until `stop`)."""
    if hang_file is None or not hang_file.exists():
        return
    log.warning("%s exists: hanging without pinging the watchdog (test hook)", hang_file)
    while hang_file.exists() and not stop.wait(_HANG_POLL_S):
        pass


def _watch(agent: Agent, systemd: Systemd, stop: threading.Event) -> None:
    """Ping the watchdog every half period while every part of the agent runs."""
    hang = os.environ.get(HANG_FILE_ENV)
    hang_file = Path(hang) if hang else None
    while not stop.wait(systemd.ping_every):
        _hang_while_told(hang_file, stop)
        stalled = stalled_threads(agent)
        if stalled:
            # No ping: a thread does not come back, so systemd aborts the agent at the end
            # of the period and starts it again.
            log.error("not pinging the watchdog: stopped threads %s", ", ".join(stalled))
            systemd.status(f"stalled: {', '.join(stalled)} stopped")
            continue
        systemd.ping()


def run_agent(config: Path, *, stop: threading.Event | None = None) -> int:
    """Run until SIGINT or SIGTERM (or `stop` is set); the outbox keeps what is unsent."""
    settings = load_settings(config)
    stop = stop or threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    agent = Agent(settings, pin_factory=pin_factory_for(settings))
    agent.start()
    systemd = Systemd()
    try:
        if systemd.enabled:
            systemd.ready()
            _watch(agent, systemd, stop)
        else:
            stop.wait()
    finally:
        systemd.stopping()
        systemd.close()
        agent.stop()
    log.info("agent stopped; %d events wait in the outbox", agent.outbox.depth)
    return 0
