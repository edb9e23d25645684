"""What every child process Ruche starts for itself (Mosquitto, influxd)
has in common: one `Popen`, a log file, and the way it is stopped. Each subclass starts its
own binary in `start()` and sets `_proc`.
"""

from __future__ import annotations

import signal
import subprocess
from abc import ABC, abstractmethod
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = ["ChildProcess"]


class ChildProcess(ABC):
    """A child process writing to `log_path`, stopped with SIGTERM and, if it will not go,
    SIGKILL. A context manager: started on entry, stopped on exit."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @abstractmethod
    def start(self, *, timeout: float = 10.0) -> None:
        """Start (if not running) and wait until it serves; each subclass knows how."""

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM and wait up to `timeout` seconds, then SIGKILL."""
        self._signal(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: no chance to save or say goodbye."""
        self._signal(signal.SIGKILL, 10.0)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def _signal(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
