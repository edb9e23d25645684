"""A daemon thread that runs until asked to stop: the lifecycle of the server's periodic
workers (the occupancy refresh, the WAL checkpointer, the stats reporter)."""

from __future__ import annotations

import threading
from collections.abc import Callable


class StoppableThread:
    """Runs `target(stopping)` in a daemon thread; `stop` sets `stopping` and joins.

    The target waits on the event between rounds (`while not stopping.wait(interval)`),
    so a stop interrupts its wait at once; what it does after the loop is its last word.
    """

    def __init__(self, target: Callable[[threading.Event], None], *, name: str) -> None:
        self._target = target
        self.name = name
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        self.stopping.clear()
        self._thread = threading.Thread(
            target=self._target, args=(self.stopping,), name=self.name, daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Ask the target to finish and wait for it (at most `timeout` seconds)."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout)
            self._thread = None
