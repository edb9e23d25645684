"""Run a private InfluxDB 1.x (`influxd`) in a directory of its own: tests, demo, benchmarks.

Production points Ruche at an InfluxDB it does not run; this is for a laptop.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from ruche.sim.services.process import ChildProcess
from ruche.sim.services.sockets import free_port


class InfluxdError(RuntimeError):
    """influxd is missing, would not start, or died; the message says what to do."""


def find_influxd() -> str:
    debian = Path("/usr/bin/influxd")
    found = shutil.which("influxd") or (str(debian) if debian.exists() else None)
    if found is None:
        raise InfluxdError(
            "influxd is not installed: install the Debian package 'influxdb' "
            "(apt-get install influxdb; `make test` and `make demo` do this)"
        )
    return found


def render_influxd_conf(directory: Path, *, http_port: int, rpc_port: int) -> str:
    """A minimal influxd 1.x config: loopback only, no telemetry, data under `directory`."""
    return f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{rpc_port}"

[meta]
  dir = "{directory / "meta"}"
  logging-enabled = false

[data]
  dir = "{directory / "data"}"
  wal-dir = "{directory / "wal"}"
  query-log-enabled = false
  trace-logging-enabled = false

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{http_port}"
  auth-enabled = false
  log-enabled = false

[logging]
  level = "warn"

[subscriber]
  enabled = false

[continuous_queries]
  enabled = false
"""


PORT_ATTEMPTS = 3


class InfluxdProcess(ChildProcess):
    """One influxd with its data in `directory`; stop and start keep the data."""

    def __init__(self, directory: Path, *, http_port: int | None = None) -> None:
        self.directory = directory.resolve()
        super().__init__(self.directory / "influxd.log")
        self.directory.mkdir(parents=True, exist_ok=True)
        self._fixed_port = http_port is not None
        self.http_port = http_port or free_port()
        self.conf_path = self.directory / "influxd.conf"
        self._write_conf()
        self._binary = find_influxd()

    def _write_conf(self) -> None:
        self.conf_path.write_text(
            render_influxd_conf(self.directory, http_port=self.http_port, rpc_port=free_port()),
            encoding="utf-8",
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def start(self, *, timeout: float = 30.0) -> None:
        """Start and wait until `/ping` answers. A free port another process took between
        our choosing it and influxd binding it is chosen again (a few times)."""
        for _ in range(PORT_ATTEMPTS - 1):
            try:
                self._start_once(timeout)
            except InfluxdError as exc:
                if self._fixed_port or "address already in use" not in str(exc):
                    raise
                self.http_port = free_port()
                self._write_conf()
            else:
                return
        self._start_once(timeout)

    def _start_once(self, timeout: float) -> None:
        if self.running:
            return
        with self.log_path.open("ab") as log:
            proc = self._proc = subprocess.Popen(
                [self._binary, "run", "-config", str(self.conf_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                break
            if self.ping():
                return
            time.sleep(0.05)
        self.stop()
        raise InfluxdError(
            f"influxd did not answer on {self.url}; its log says:\n{self.log_tail()}"
        )

    def ping(self) -> bool:
        try:
            # S310: the URL is our own loopback one, built above.
            with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as response:  # noqa: S310
                return bool(response.status == 204)
        except (urllib.error.URLError, OSError):
            return False

    def stop(self, *, timeout: float = 15.0) -> None:
        # Longer than a broker's wait: influxd closes every shard and WAL file before it exits.
        super().stop(timeout=timeout)
