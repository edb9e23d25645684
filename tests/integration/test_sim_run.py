"""`ruche sim run` plays a scenario file into real ptys and nfcpy's UDP driver."""

from __future__ import annotations

import queue
import subprocess
import sys
import time

import pytest

from ruche.broker import PresenceState
from ruche.edge.nfc import NfcReader
from ruche.edge.presence import PresenceConfig, PresenceUpdate
from ruche.edge.radar import RadarReader
from ruche.sim.services.sockets import free_port

pytestmark = pytest.mark.integration

UID = "0114b3c2d1e0f001"


class TestSimRun:
    """The CLI's radar frames reach pyserial and its badge taps reach an nfcpy reader."""

    def test_scenario_drives_real_readers(self, tmp_path):
        device = f"udp:127.0.0.1:{free_port()}"
        scenario = tmp_path / "s.toml"
        scenario.write_text(
            f"""speed = 1.0
[[radars]]
desk = "desk-1"
link = "radar-1"
steps = [["empty", 1], ["arrive", 1], ["seated", 6], ["garbage", 40], ["seated", 2]]

[[badges]]
device = "{device}"
taps = [[2.0, "{UID}", 1.5]]
""",
            encoding="utf-8",
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "ruche", "sim", "run", "--scenario", str(scenario),
             "--dir", str(tmp_path)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        events: queue.Queue[object] = queue.Queue()
        taps: queue.Queue[bytes] = queue.Queue()
        link = tmp_path / "radar-1"
        deadline = time.monotonic() + 10
        while not link.exists():
            assert time.monotonic() < deadline, "no pty link appeared"
            time.sleep(0.05)
        config = PresenceConfig(arrive_delay=1.0, leave_delay=3.0)
        with (
            RadarReader(port=str(link), desk="desk-1", on_event=events.put, config=config) as radar,
            NfcReader(device=device, reader_id="r", on_tap=lambda uid, _r: taps.put(uid)),
        ):
            assert taps.get(timeout=10) == bytes.fromhex(UID)
            got = events.get(timeout=10)
            assert isinstance(got, PresenceUpdate)
            assert got.state is PresenceState.OCCUPIED
            out, err = proc.communicate(timeout=30)
            assert radar.stats.parser.garbage_bytes >= 40
        assert proc.returncode == 0, err
        assert f'serial = "{link}"' in out
        assert device in out
