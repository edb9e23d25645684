"""Run a Mosquitto process with Ruche's generated configuration (tests, demo, benchmarks)."""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

from ruche.broker.accounts import Accounts
from ruche.broker.mosquitto_config import BrokerFiles, BrokerOptions, write_config
from ruche.sim.services.process import ChildProcess
from ruche.sim.services.sockets import free_port, wait_for_port

_SEARCH = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


class MosquittoError(RuntimeError):
    """Mosquitto is missing, would not start, or died; the message says what to do."""


def find_mosquitto() -> str:
    """The mosquitto binary: on PATH or where Debian puts it (/usr/sbin)."""
    found = shutil.which("mosquitto") or next((p for p in _SEARCH if Path(p).exists()), None)
    if found is None:
        raise MosquittoError(
            "mosquitto is not installed: install the Debian package 'mosquitto' "
            "(apt-get install mosquitto; `make test` and `make demo` do this)"
        )
    return found


class MosquittoProcess(ChildProcess):
    """One Mosquitto process on a generated configuration, stoppable and restartable.

    Stopping with SIGTERM lets it save its persistence snapshot; `kill()` sends
    SIGKILL, which loses what it held since the last autosave.
    """

    def __init__(self, files: BrokerFiles, *, host: str, port: int) -> None:
        super().__init__(files.directory / "mosquitto.log")
        self.files = files
        self.host = host
        self.port = port
        self._binary = find_mosquitto()

    @classmethod
    def generate(
        cls, directory: Path, accounts: Accounts, options: BrokerOptions | None = None
    ) -> MosquittoProcess:
        """Write a config for `accounts` into `directory`; by default on a free loopback port."""
        opts = options or BrokerOptions(port=free_port())
        if opts.run_as is None and os.geteuid() == 0:
            opts = replace(opts, run_as=getpass.getuser())
        files = write_config(directory, accounts, opts)
        return cls(files, host=opts.bind, port=opts.port)

    def start(self, *, timeout: float = 10.0) -> None:
        """Start and wait until the listener accepts connections."""
        if self.running:
            return
        log = self.log_path.open("ab")
        try:
            self._proc = subprocess.Popen(
                [self._binary, "-c", str(self.files.conf)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        if not wait_for_port(self.host, self.port, timeout=timeout) or not self.running:
            self.kill()
            raise MosquittoError(
                f"mosquitto did not start on {self.host}:{self.port}; its log says:\n"
                + self.log_tail()
            )
