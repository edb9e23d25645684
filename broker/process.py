"""A broker process on Ruche's generated configuration: Mosquitto, or the embedded Python
broker when Mosquitto is not installed. `BrokerProcess` is what the demo holds of either.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Protocol

from ruche.broker.accounts import Accounts
from ruche.broker.embedded import READY_LINE
from ruche.broker.mosquitto_config import BrokerFiles, BrokerOptions, write_config
from ruche.child_process import ChildProcess
from ruche.ports import free_port, wait_for_port

__all__ = ["BrokerProcess", "EmbeddedBrokerError", "EmbeddedBrokerProcess"]


class BrokerProcess(Protocol):
    """A broker serving `files` on `host:port`, as `MosquittoProcess` and
    `EmbeddedBrokerProcess` both are."""

    files: BrokerFiles
    host: str
    port: int
    log_path: Path

    @property
    def running(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    def start(self, *, timeout: float = 10.0) -> None: ...

    def stop(self, *, timeout: float = 10.0) -> None: ...

    def kill(self) -> None: ...

    def restart(self) -> None: ...

    def log_tail(self, lines: int = 20) -> str: ...


class EmbeddedBrokerError(RuntimeError):
    """The embedded broker would not start or died; the message holds its log's tail."""


class EmbeddedBrokerProcess(ChildProcess):
    """`python -m ruche.broker.embedded` on a generated configuration, in a child process
    (its CPU then does not compete with the caller's GIL). Same surface as
    `MosquittoProcess`; it keeps nothing across a restart (no persistence).

    On `stop()` (SIGTERM) clients are told the server is shutting down; on `kill()`
    (SIGKILL) they see their connections drop."""

    def __init__(self, files: BrokerFiles, *, host: str, port: int) -> None:
        super().__init__(files.directory / "embedded-broker.log")
        self.files = files
        self.host = host
        self.port = port

    @classmethod
    def generate(
        cls, directory: Path, accounts: Accounts, options: BrokerOptions | None = None
    ) -> EmbeddedBrokerProcess:
        """Write the Mosquitto config for `accounts` into `directory` (either broker can
        serve it); by default on a free loopback port."""
        opts = options or BrokerOptions(port=free_port())
        files = write_config(directory, accounts, opts)
        return cls(files, host=opts.bind, port=opts.port)

    def start(self, *, timeout: float = 10.0) -> None:
        """Start and wait until the listener accepts connections."""
        if self.running:
            return
        command = [sys.executable, "-m", "ruche.broker.embedded",
                   "--conf-dir", str(self.files.directory),
                   "--host", self.host, "--port", str(self.port)]  # fmt: skip
        with self.log_path.open("ab") as log:
            offset = log.tell()
            proc = self._proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        # Its own line, not just an open port: another process may hold the port.
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            if READY_LINE.encode() in self._log_since(offset):
                if wait_for_port(
                    self.host, self.port, timeout=max(0.1, deadline - time.monotonic())
                ):
                    return
                break
            time.sleep(0.02)
        self.kill()
        raise EmbeddedBrokerError(
            f"the embedded broker did not start on {self.host}:{self.port}; its log "
            f"({self.log_path}) says:\n{self.log_tail()}"
        )

    def _log_since(self, offset: int) -> bytes:
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read()
