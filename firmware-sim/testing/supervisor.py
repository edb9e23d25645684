"""A service manager in miniature: one child run as systemd runs a `Type=notify` service
with `WatchdogSec=` and `Restart=always`, as far as the sd_notify protocol goes.

```python
with Supervisor(["/opt/ruche/bin/ruche", "edge", "run", "--config", "agent.toml"],
                workdir=tmp, watchdog_s=2.0) as service:
    service.wait_ready()
    ...
    service.aborts, service.restarts
```

The child gets `NOTIFY_SOCKET` (a unix datagram socket the supervisor binds),
`WATCHDOG_USEC` and `WATCHDOG_PID` (its own pid, set between fork and exec as systemd
does). Like `NotifyAccess=main`, only the child's own messages count, told by the
kernel's credentials on each datagram. Once READY=1 has come, each WATCHDOG=1 rearms the
watchdog; when a period passes without one, the child gets SIGABRT and, after
`grace_s`, SIGKILL; then it is started again. A child that exits on its own is started
again too, and one that never says READY=1 is stopped after `start_timeout_s` and
started again. Its output goes to `workdir/service.log`.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

from ruche.sim.testing.waits import wait_until

__all__ = ["Notice", "Supervisor"]

_CREDENTIALS = struct.Struct("3i")  # struct ucred: pid, uid, gid
# Sets WATCHDOG_PID to the pid the command will have, then becomes the command; core
# dumps off, so that each SIGABRT does not leave one behind.
_TRAMPOLINE = (
    "import os, resource, sys\n"
    "resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
    "os.environ['WATCHDOG_PID'] = str(os.getpid())\n"
    "os.execvp(sys.argv[1], sys.argv[1:])\n"
)


@dataclass(frozen=True)
class Notice:
    """One datagram from the child: when, from which pid, and its `KEY=VALUE` fields."""

    at: float
    pid: int
    fields: Mapping[str, str]


class Supervisor:
    """Runs `command` until `stop()`, restarting it as systemd would (see the module)."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        workdir: Path,
        watchdog_s: float,
        env: Mapping[str, str] | None = None,
        grace_s: float = 5.0,
        restart_s: float = 0.1,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.command = list(command)
        self.workdir = workdir
        self.watchdog_s = watchdog_s
        self.grace_s = grace_s
        self.restart_s = restart_s
        self.start_timeout_s = start_timeout_s
        self._env = {**os.environ, **(env or {})}
        self._lock = threading.Lock()
        self._notices: list[Notice] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._ready_pid: int | None = None
        self.starts = 0
        self.restarts = 0
        self.aborts = 0
        """Children killed by the watchdog."""
        self.exits: list[int] = []
        """Each ended child's return code (negative: the signal that ended it)."""
        self._stop = threading.Event()
        # A path of its own, short: unix socket paths stop at 107 bytes.
        self._socket_dir = Path(tempfile.mkdtemp(prefix="ruche-notify-"))
        self.socket_path = self._socket_dir / "notify"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        self._socket.bind(str(self.socket_path))
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    # --- what tests read ------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The running child's pid."""
        proc = self._proc
        return None if proc is None or proc.poll() is not None else proc.pid

    @property
    def ready(self) -> bool:
        """Whether the running child has said READY=1."""
        return self._ready_pid is not None and self._ready_pid == self.pid

    def notices(self, key: str | None = None) -> list[Notice]:
        """Every datagram taken so far (only those carrying `key`, if given)."""
        with self._lock:
            return [n for n in self._notices if key is None or key in n.fields]

    def wait_ready(self, timeout: float = 30.0) -> int:
        """Wait until a child has said READY=1; return its pid."""
        wait_until(lambda: self.ready, timeout=timeout, what="READY=1 from the child")
        assert self._ready_pid is not None  # noqa: S101 - ready says so
        return self._ready_pid

    # --- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop the child (SIGTERM, then SIGKILL after `grace_s`) and restart it no more."""
        self._stop.set()
        self._thread.join()
        self._socket.close()
        shutil.rmtree(self._socket_dir, ignore_errors=True)

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

    # --- the manager's loop ---------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            proc = self._spawn()
            self._watch(proc)
            if self._stop.is_set():
                break
            self.restarts += 1
            self._stop.wait(self.restart_s)

    def _spawn(self) -> subprocess.Popen[bytes]:
        env = {
            **self._env,
            "NOTIFY_SOCKET": str(self.socket_path),
            "WATCHDOG_USEC": str(round(self.watchdog_s * 1_000_000)),
        }
        with (self.workdir / "service.log").open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-c", _TRAMPOLINE, *self.command],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._proc = proc
        self.starts += 1
        return proc

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Until the child ends: take its messages, and abort it when its watchdog fires."""
        deadline = time.monotonic() + self.start_timeout_s
        running = False
        while not self._stop.is_set():
            if proc.poll() is not None:
                self.exits.append(proc.returncode)
                return
            for notice in self._receive(min(0.05, max(0.0, deadline - time.monotonic()))):
                if notice.pid != proc.pid:
                    continue  # NotifyAccess=main: a helper's word does not count
                fields = notice.fields
                if fields.get("READY") == "1" and not running:
                    # systemd arms the watchdog from READY=1 on, not from the start.
                    running = True
                    self._ready_pid = proc.pid
                    deadline = notice.at + self.watchdog_s
                if running and fields.get("WATCHDOG") == "1":
                    deadline = notice.at + self.watchdog_s
                if fields.get("STOPPING") == "1":
                    deadline = float("inf")  # stopping: TimeoutStopSec's business, not ours
            if time.monotonic() >= deadline:
                if running:
                    self.aborts += 1
                self._end(proc, signal.SIGABRT if running else signal.SIGTERM)
                return
        self._end(proc, signal.SIGTERM)

    def _end(self, proc: subprocess.Popen[bytes], first: signal.Signals) -> None:
        if proc.poll() is None:
            proc.send_signal(first)
            try:
                proc.wait(self.grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.exits.append(proc.returncode)
        self._receive(0)  # what it said on its way out (STOPPING=1) is kept too

    def _receive(self, timeout: float) -> list[Notice]:
        taken: list[Notice] = []
        readable, _, _ = select.select([self._socket], [], [], timeout)
        while readable:
            data, ancillary, _flags, _address = self._socket.recvmsg(
                4096, socket.CMSG_SPACE(_CREDENTIALS.size)
            )
            pid = next(
                (
                    _CREDENTIALS.unpack(cdata[: _CREDENTIALS.size])[0]
                    for level, kind, cdata in ancillary
                    if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS
                ),
                0,
            )
            fields = dict(
                line.split("=", 1)
                for line in data.decode(errors="replace").splitlines()
                if "=" in line
            )
            notice = Notice(at=time.monotonic(), pid=pid, fields=fields)
            taken.append(notice)
            with self._lock:
                self._notices.append(notice)
            readable, _, _ = select.select([self._socket], [], [], 0)
        return taken
