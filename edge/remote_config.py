"""The doors and desks the server says an agent has: taken as they come, applied in order.

An agent whose file lists no doors and no desks is *managed*: the server publishes its
`config` (retained, so it arrives at every connect) from the registry, and this keeper
applies each newer version in a thread of its own, never in the MQTT network thread (a
reader can take seconds to open or close, and acks must keep flowing meanwhile):

- a version no newer than the one running is ignored (a retained copy seen again);
- a version with the same doors and desks as the running one only takes its number;
- otherwise the agent rewires (`apply`): what changed closes and opens again, what did
  not keeps running, and the outbox is not touched, so no queued event is lost;
- if the agent cannot apply it (a pin or serial port it cannot open, a reader missing),
  `apply` puts the previous wiring back and raises: the version is refused, the reason
  goes into the agent's status (`config_refused`) and the log, and the old one keeps
  running until a newer version comes.

What was applied is kept in the state folder, so an agent that restarts while the
server or the network is down runs its doors as last configured.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from ruche.broker import AgentConfig, Channel, ContractError, decode_payload, encode
from ruche.edge.files import write_atomic

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


class RemoteConfig:
    """The latest config from the server, its application, and what the agent reports."""

    def __init__(
        self,
        state_dir: Path,
        apply: Callable[[AgentConfig], None],
        announce: Callable[[], None],
    ) -> None:
        self._path = state_dir / CONFIG_FILE
        self._apply = apply
        self._announce = announce
        self._lock = threading.Condition()
        self._offered: AgentConfig | None = None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.running: AgentConfig | None = self._load()
        """The config the agent runs; None until one has been applied."""
        self.refused: str | None = None
        """Why the latest version was not applied; None once a version applies."""
        self.applied = 0
        """How many versions have been applied (rewired) since the start, for tests."""

    @property
    def version(self) -> int | None:
        return None if self.running is None else self.running.version

    def state(self) -> tuple[int | None, str | None]:
        """(running version, refusal) for the agent's status message."""
        with self._lock:
            return self.version, self.refused

    def offer(self, config: AgentConfig) -> None:
        """A config from the server (MQTT thread): the newest offered is applied next."""
        with self._lock:
            if self._offered is None or config.version > self._offered.version:
                self._offered = config
            self._lock.notify_all()

    def start(self) -> None:
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="remote-config", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._lock:
                while self._offered is None and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    return
                config, self._offered = self._offered, None
            assert config is not None  # noqa: S101 - the wait above ends only with one
            self._take(config)

    def _take(self, config: AgentConfig) -> None:
        running = self.running
        if running is not None and config.version <= running.version:
            return
        same = running is not None and (running.doors, running.desks) == (
            config.doors,
            config.desks,
        )
        if not same:
            try:
                self._apply(config)
            except Exception as exc:  # noqa: BLE001 - any failure refuses the version
                with self._lock:
                    self.refused = f"version {config.version}: {exc}"[:500]
                log.error("config version %d refused, the previous one keeps running: %s",  # noqa: TRY400
                          config.version, exc)  # fmt: skip
                self._announce()
                return
            self.applied += 1
        self._save(config)
        with self._lock:
            self.running = config
            self.refused = None
        if not same:
            log.info("config version %d applied: %d doors, %d desks", config.version,
                     len(config.doors), len(config.desks))  # fmt: skip
        self._announce()

    def _load(self) -> AgentConfig | None:
        try:
            data = self._path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            payload = decode_payload(Channel.CONFIG, data)
        except ContractError as exc:
            log.error("kept config unreadable, ignored until the server sends one: %s", exc)  # noqa: TRY400
            return None
        assert isinstance(payload, AgentConfig)  # noqa: S101 - the channel's schema says so
        return payload

    def _save(self, config: AgentConfig) -> None:
        write_atomic(self._path, encode(config))
