"""The `ruche` command as a person runs it."""

from __future__ import annotations

import json
import os
import pwd
import re
import signal
import subprocess
import sys
import time

import pytest

from ruche.server.api.pages.rendering import NAVIGATION
from ruche.server.storage.enums import Role
from ruche.sim.nfc import BadgeEmulator
from ruche.sim.services.mosquitto import find_mosquitto
from ruche.sim.services.sockets import free_port, wait_for_port

pytestmark = pytest.mark.integration

RUCHE = [sys.executable, "-m", "ruche"]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RUCHE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


class TestBrokerConfigCommand:
    """`ruche broker config` writes files a real Mosquitto runs with."""

    def test_written_config_runs_in_mosquitto(self, tmp_path, probe_factory):
        accounts = tmp_path / "agents.toml"
        accounts.write_text(
            '[server]\npassword = "server-password-long-enough"\n\n'
            '[[agents]]\nsite = "lyon"\nid = "door-a"\npassword = "door-a-password-long-enough"\n',
            encoding="utf-8",
        )
        port = free_port()
        out = tmp_path / "broker"
        run_as = pwd.getpwuid(os.geteuid()).pw_name
        done = _run("broker", "config", "--accounts", str(accounts), "--out", str(out),
                    "--port", str(port), "--run-as", run_as)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "door-a-password" not in (out / "dynamic-security.json").read_text()
        assert oct((out / "dynamic-security.json").stat().st_mode & 0o777) == "0o600"
        proc = subprocess.Popen([find_mosquitto(), "-c", str(out / "mosquitto.conf")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            assert wait_for_port("127.0.0.1", port, timeout=10)
            probe = probe_factory(
                "lyon/door-a", "door-a-password-long-enough", client_id="lyon/door-a"
            )
            probe.port = port
            reason = probe.connect()
            assert reason is not None
            assert not reason.is_failure
        finally:
            proc.terminate()
            proc.wait(10)

    def test_bad_accounts_file_names_the_field(self, tmp_path):
        accounts = tmp_path / "agents.toml"
        accounts.write_text(
            '[server]\npassword = "change-me"\n\n[[agents]]\nsite = "ly on"\nid = "a"\n',
            encoding="utf-8",
        )
        done = _run("broker", "config", "--accounts", str(accounts), "--out", str(tmp_path / "o"))
        assert done.returncode == 2
        assert "server.password" in done.stderr
        assert "agents.0.site" in done.stderr
        assert "agents.0.password: Field required" in done.stderr
        assert "Traceback" not in done.stderr

    def test_missing_accounts_file(self, tmp_path):
        done = _run("broker", "config", "--accounts", str(tmp_path / "nope.toml"),
                    "--out", str(tmp_path / "o"))  # fmt: skip
        assert done.returncode == 2
        assert "no such file" in done.stderr


class TestDemoCommand:
    """`ruche demo` starts everything, says how to look at it, sums up and stops cleanly."""

    def test_duration(self):
        started = time.monotonic()
        done = _run("demo", "--duration", "2", timeout=90)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - started < 60
        assert "Mosquitto on 127.0.0.1:" in done.stdout, "which broker"
        assert "mosquitto_sub" in done.stdout
        assert "live page: http://127.0.0.1:" in done.stdout
        assert "/readyz" in done.stdout
        assert "/metrics" in done.stdout
        assert "Authorization: Bearer ruche_" in done.stdout, "a manager key to try the API"
        assert "summary: " in done.stdout
        assert re.search(r"events: +[0-9,]+ stored \(", done.stdout)
        assert "doors:" in done.stdout
        assert "invoices for " in done.stdout
        assert done.stdout.rstrip().endswith("bye")

    def test_ctrl_c_stops_cleanly(self):
        port = free_port()
        proc = subprocess.Popen([*RUCHE, "demo", "--port", str(port)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            # As soon as the broker is up: the rest is still starting.
            assert wait_for_port("127.0.0.1", port, timeout=20)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
        assert proc.returncode == 0, err
        assert out.rstrip().endswith("bye")
        assert not wait_for_port("127.0.0.1", port, timeout=0.5), "broker is gone"

    def test_bad_arguments_are_refused(self, tmp_path):
        few = _run("demo", "--desks", "3")
        assert few.returncode == 2
        assert "--desks must be 8 to 200, not 3" in few.stderr
        slow = _run("demo", "--speed", "0.5")
        assert slow.returncode == 2
        assert "must be 1 to 86400" in slow.stderr
        (tmp_path / "ruche.db").write_bytes(b"")
        again = _run("demo", "--dir", str(tmp_path))
        assert again.returncode == 2
        assert "already holds a demo's data" in again.stderr
        assert "Traceback" not in few.stderr + slow.stderr + again.stderr


class TestBenchEdgeCommand:
    """`ruche bench edge --json` measures a real agent process and loses nothing."""

    @pytest.mark.slow
    def test_json_figures(self):
        done = _run("bench", "edge", "--seconds", "3", "--radars", "2", "--json", timeout=120)
        assert done.returncode == 0, done.stderr
        figures = json.loads(done.stdout)
        assert figures["radars"] == 2
        assert figures["frames_per_s"] > 10, "two radars at 10 Hz were read"
        assert figures["rss_mb"] > 0
        assert figures["cpu_percent"] >= 0
        assert figures["lost"] == 0


class TestBenchWebCommand:
    """`ruche bench web --json` signs in as a manager and a member through the form and
    times every page the navigation gives them, each answering 200."""

    @pytest.mark.slow
    def test_json_figures(self):
        done = _run("bench", "web", "--desks", "12", "--members", "30", "--requests", "3",
                    "--json", timeout=180)  # fmt: skip
        assert done.returncode in (0, 1), done.stderr
        figures = json.loads(done.stdout)
        timed = {(page["role"], page["path"]): page for page in figures["pages"]}
        expected = {("manager", item.path) for item in NAVIGATION
                    if Role.MANAGER in item.roles and item.path != "/docs"}  # fmt: skip
        expected |= {("member", item.path) for item in NAVIGATION if Role.MEMBER in item.roles}
        assert expected <= timed.keys(), figures["not_served"]
        assert any(path.startswith("/my/checkin/") for _, path in timed)
        assert all(page["status"] == 200 for page in timed.values()), figures["failed"]
        assert all(page["p95_ms"] > 0 for page in timed.values())
        assert (done.returncode == 0) == (figures["failed"] == [])


class TestReadBadgeCommand:
    """`ruche edge read-badge` prints what a reader reports, as the API enrols it."""

    def test_prints_each_uid(self):
        device = f"udp:127.0.0.1:{free_port()}"
        uids = [bytes.fromhex("0102030405060708"), bytes.fromhex("1112131415161718")]
        with BadgeEmulator(device=device) as card:
            command = [sys.executable, "-m", "ruche", "edge", "read-badge", "--device", device,
                       "--count", "2", "--timeout", "30"]  # fmt: skip
            reading = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)  # fmt: skip
            try:
                for uid in uids:
                    time.sleep(1.5)  # the reader opens, then one presentation each
                    card.tap(uid, hold_s=1.5)
                out, err = reading.communicate(timeout=30)
            finally:
                reading.kill()
        assert reading.returncode == 0, err
        assert out.split() == [uid.hex() for uid in uids]

    def test_no_badge_is_one_line(self):
        done = _run("edge", "read-badge", "--device", f"udp:127.0.0.1:{free_port()}",
                    "--timeout", "1")  # fmt: skip
        assert done.returncode == 2
        assert done.stderr.splitlines()[-1] == "ruche: error: no badge within 1 s"
