"""Recording stand-ins for the seams a part of Ruche talks through.

`RecordingPorts` is both of the REST API's seams at once (`CommandSender`,
`RegistryListener`): what it was asked to send, which sites it was told changed.
`Collector` records what a callback is given, from any thread.

    >>> ports = RecordingPorts()
    >>> ports.site_changed("lyon")
    >>> ports.changed
    ['lyon']
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from ruche.broker import Command

T = TypeVar("T")


@dataclass
class RecordingPorts:
    """Both seams of the API, recording what they were given."""

    commands: list[tuple[str, str, Command]] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def send(self, site: str, agent: str, command: Command) -> None:
        self.commands.append((site, agent, command))

    def site_changed(self, site: str) -> None:
        self.changed.append(site)

    def clear(self) -> None:
        self.commands.clear()
        self.changed.clear()


class Collector(Generic[T]):
    """A callback that keeps what it is called with, thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[T] = []

    def __call__(self, item: T) -> None:
        with self._lock:
            self._items.append(item)

    def items(self) -> list[T]:
        with self._lock:
            return list(self._items)

    def wait_for(self, done: Callable[[list[T]], bool], *, timeout: float = 3.0) -> list[T]:
        """What was collected once `done` holds for it, or at `timeout` (for the caller to
        assert on: the failure then shows what did arrive)."""
        deadline = time.monotonic() + timeout
        while not done(items := self.items()) and time.monotonic() < deadline:
            time.sleep(0.01)
        return items
