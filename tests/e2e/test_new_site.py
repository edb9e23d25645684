"""A new site from nothing, as an operator plays it: separate folders stand in for the
server and two Raspberry Pis, each running the wheel installed into a fresh virtualenv.

`ruche server init` (twice: the second run changes nothing), Mosquitto on the generated
TLS configuration, `ruche server run`, the registry filled through the REST API with the
first admin key, two agents enrolled from the minimal files `ruche admin agent add`
writes, over TLS. A badge on the first door's simulated reader opens the door. A desk
added to the second agent in the registry reports presence within 5 s, without any
restart, while the first agent never disconnects. Disabling the second agent's account
cuts it off at once while the first stays; re-enabled, its queued events all arrive.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from ruche.broker import Channel, Presence, Status, Unlock, decode_payload
from ruche.sim.ld2410 import PtyRadar, Scenario, Seated
from ruche.sim.nfc import BadgeEmulator
from ruche.sim.services.mosquitto import find_mosquitto
from ruche.sim.services.sockets import free_port, wait_for_port
from ruche.sim.testing.waits import eventually, wait_until

pytestmark = pytest.mark.integration

UID = bytes.fromhex("0102030405060708")


def checksums(*roots: Path) -> dict[str, str]:
    return {
        str(path): hashlib.sha256(path.read_bytes()).hexdigest()
        for root in roots
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


class Processes:
    """The long-running processes of the test, stopped (and their logs kept) at the end."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.closing: list[Callable[[], None]] = []

    def start(self, name: str, command: list[str], **env: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                       env={**os.environ, **env}, cwd=self.logs)  # fmt: skip
        self.running[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for close in self.closing:
            close()
        for process in reversed(self.running.values()):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.running.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    running = Processes(tmp_path)
    yield running
    running.stop_all()


class Watcher:
    """A server-account MQTT client over TLS that keeps what it hears, by topic."""

    def __init__(self, port: int, password: str, ca: Path) -> None:
        self.heard: list[tuple[str, bytes]] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.username_pw_set("ruche-server", password)
        self.client.tls_set(ca_certs=str(ca))
        self.client.on_message = lambda _c, _u, m: self.heard.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        wait_until(self.client.is_connected, timeout=10, what="the watcher connected")

    def subscribe(self, topic: str) -> None:
        self.client.subscribe(topic, qos=1)

    def payloads(self, channel: Channel, topic_part: str) -> list[Any]:
        return [decode_payload(channel, p) for t, p in list(self.heard) if topic_part in t]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_new_site_from_nothing(installs, tmp_path, processes):  # noqa: PLR0915 - one story
    server, pi = installs("server"), installs("edge")
    etc, var = tmp_path / "server" / "etc", tmp_path / "server" / "var"
    tls_port, local_port, http_port = free_port(), free_port(), free_port()
    init = ["server", "init", "--config-dir", str(etc), "--state-dir", str(var),
            "--broker-host", "127.0.0.1", "--mqtt-port", str(tls_port),
            "--mqtt-local-port", str(local_port), "--http-port", str(http_port),
            "--broker-user", "root", "--name", "lyon"]  # fmt: skip

    # --- init, twice ------------------------------------------------------------------
    first = server.ruche(*init)
    assert first.returncode == 0, first.stderr
    admin_key = re.search(r"^(ruche_\S+)$", first.stdout, re.MULTILINE)
    assert admin_key is not None, first.stdout
    before = checksums(etc, var)
    again = server.ruche(*init)
    assert again.returncode == 0, again.stderr
    steps = [line for line in again.stdout.splitlines() if line.startswith(("done", "already"))]
    assert steps, again.stdout
    assert all(line.startswith("already done") for line in steps), again.stdout
    assert "ruche_" not in again.stdout, "the admin key is shown once"
    assert checksums(etc, var) == before, "a second init changed files"
    config = etc / "server.toml"
    server_password = re.search(r'password = "([^"]+)"', config.read_text())
    assert server_password is not None

    # --- Mosquitto with the generated TLS configuration, then the server ---------------
    processes.start(
        "mosquitto", [find_mosquitto(), "-c", str(etc / "mosquitto" / "mosquitto.conf")]
    )
    assert wait_for_port("127.0.0.1", tls_port, timeout=10), processes.log("mosquitto")
    processes.start("server", [str(server.bin / "ruche"), "server", "run", "--config", str(config)])
    bearer = {"Authorization": f"Bearer {admin_key.group(1)}"}
    api = httpx.Client(base_url=f"http://127.0.0.1:{http_port}", headers=bearer, timeout=10)
    processes.closing.append(api.close)
    eventually(lambda: _ready(api), timeout=60, what=f"the server ready: {processes.log('server')}")

    # --- the registry: a site, a member on a plan with a badge -------------------------
    site = api.post("/sites", json={"slug": "lyon", "name": "Lyon", "timezone": "Europe/Paris"})
    assert site.status_code == 201, site.text
    site_id = site.json()["id"]
    zone_id = api.post(f"/sites/{site_id}/zones", json={"name": "open space"}).json()["id"]
    plan = api.post("/plans", json={"name": "resident", "site_ids": [site_id],
                                    "schedule": {"kind": "24/7"}})  # fmt: skip
    assert plan.status_code == 201, plan.text
    member = api.post("/members", json={"name": "Ada", "email": "ada@example.org"}).json()
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    joined = {"member_id": member["id"], "plan_id": plan.json()["id"], "starts_at": since}
    membership = api.post("/memberships", json=joined)
    assert membership.status_code == 201, membership.text
    badge = api.post(f"/members/{member['id']}/badges", json={"site_id": site_id, "uid": UID.hex()})
    assert badge.status_code == 201, badge.text

    # --- two agents enrolled from their minimal files ---------------------------------
    pis = {name: tmp_path / name for name in ("pi-1", "pi-2")}
    for name, home in pis.items():
        enrolled = server.ruche("admin", "agent", "add", "--config", str(config), "--site", "lyon",
                                "--id", name, "--out", str(home / "etc"),
                                "--ca-path", str(home / "etc" / "ca.pem"))  # fmt: skip
        assert enrolled.returncode == 0, enrolled.stderr
        assert "password" not in enrolled.stdout
        assert "[[doors]]" not in (home / "etc" / "agent.toml").read_text()
    agents = {a["slug"]: a["id"] for a in api.get(f"/sites/{site_id}/agents").json()["data"]}
    reader = f"udp:127.0.0.1:{free_port()}"
    door = api.post(f"/sites/{site_id}/doors", json={
        "slug": "front", "agent_id": agents["pi-1"],
        "wiring": {"reader": reader, "relay_pin": 17, "contact_pin": 27, "unlock_ms": 2500},
    })  # fmt: skip
    assert door.status_code == 201, door.text

    watcher = Watcher(tls_port, server_password.group(1), etc / "tls" / "ca.pem")
    try:
        watcher.subscribe("ruche/v1/lyon/+/status")
        watcher.subscribe("ruche/v1/lyon/pi-1/cmd")
        watcher.subscribe("ruche/v1/lyon/pi-2/desk/+/presence")
        with BadgeEmulator(device=reader) as card:
            for name, home in pis.items():
                processes.start(name, [str(pi.bin / "ruche"), "edge", "run", "--config",
                                       str(home / "etc" / "agent.toml")],
                                RUCHE_STATE_DIR=str(home / "state"), RUCHE_GPIO="mock",
                                RUCHE_MQTT__RECONNECT_MAX_S="2")  # fmt: skip
            for name in pis:
                eventually(lambda n=name: _online(watcher, n), timeout=30,
                           what=f"{name} online: {processes.log(name)}")  # fmt: skip
            # The door comes from the registry: pi-1 runs it once its config arrived.
            eventually(lambda: _config_version(watcher, "pi-1"), timeout=20,
                       what=f"pi-1 running its config: {processes.log('pi-1')}")  # fmt: skip

            # --- a badge at the door: it opens ---------------------------------------------
            def opened() -> list[Unlock]:
                return [u for u in watcher.payloads(Channel.CMD, "pi-1/cmd")
                        if isinstance(u, Unlock) and u.request_id]  # fmt: skip

            for _ in range(3):  # as a person would, tap again if the reader missed it
                card.tap(UID, hold_s=1.5)
                if wait_for(opened, timeout=5):
                    break
            unlock = opened()
            assert unlock, f"the door did not open: {processes.log('pi-1')}"
            assert unlock[0].door == "front"
            assert unlock[0].ms == 2500

        # --- a desk added to pi-2 in the registry: presence within 5 s, no restart -----
        with PtyRadar(Scenario(steps=(Seated(600),)), link=tmp_path / "ttyRADAR") as radar:
            added = time.monotonic()
            desk = api.post(f"/sites/{site_id}/desks", json={
                "zone_id": zone_id, "slug": "d1", "agent_id": agents["pi-2"],
                "wiring": {"serial": radar.device, "arrive_s": 0.5, "heartbeat_s": 1.0},
            })  # fmt: skip
            assert desk.status_code == 201, desk.text
            eventually(lambda: watcher.payloads(Channel.PRESENCE, "pi-2/desk/d1"), timeout=5,
                       what=f"presence of the new desk: {processes.log('pi-2')}")  # fmt: skip
            assert time.monotonic() - added < 5

            # --- pi-2 cut off, pi-1 stays; its events wait and all arrive after -------
            seen_before = len(watcher.payloads(Channel.PRESENCE, "pi-2/desk/d1"))
            disabled = server.ruche("admin", "agent", "disable", "--config", str(config),
                                    "--site", "lyon", "--id", "pi-2")  # fmt: skip
            assert disabled.returncode == 0, disabled.stderr
            # Mosquitto drops it at once (no will: an administrative disconnect is clean).
            eventually(lambda: "lyon/pi-2 been disconnected by administrative action"
                       in processes.log("mosquitto"), timeout=5, what="pi-2 cut off")  # fmt: skip
            assert "Administrative action" in processes.log("pi-2")
            time.sleep(4)  # heartbeats every second pile up in pi-2's outbox
            enabled = server.ruche("admin", "agent", "enable", "--config", str(config),
                                   "--site", "lyon", "--id", "pi-2")  # fmt: skip
            assert enabled.returncode == 0, enabled.stderr
            eventually(lambda: len(_seqs(watcher)) >= seen_before + 6, timeout=60,
                       what=f"pi-2's queued events: {processes.log('pi-2')}")  # fmt: skip
            seqs = _seqs(watcher)
            assert seqs == list(range(seqs[0], seqs[-1] + 1)), "an event was lost"
        for name in pis:
            assert processes.running[name].poll() is None, processes.log(name)
        assert not _offline(watcher, "pi-1"), "pi-1 went offline"
        assert processes.log("mosquitto").count("as lyon/pi-1 ") == 1, "pi-1 reconnected"
    finally:
        watcher.close()


def wait_for(check: Callable[[], object], *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def _ready(api: httpx.Client) -> bool:
    try:
        return api.get("/readyz").status_code == 200
    except httpx.TransportError:
        return False


def _statuses(watcher: Watcher, agent: str) -> list[Status]:
    return [s for s in watcher.payloads(Channel.STATUS, f"/{agent}/status") if s is not None]


def _online(watcher: Watcher, agent: str) -> bool:
    statuses = _statuses(watcher, agent)
    return bool(statuses) and statuses[-1].state == "online"


def _offline(watcher: Watcher, agent: str) -> bool:
    return any(s.state == "offline" for s in _statuses(watcher, agent))


def _config_version(watcher: Watcher, agent: str) -> int | None:
    statuses = _statuses(watcher, agent)
    return statuses[-1].config_version if statuses else None


def _seqs(watcher: Watcher) -> list[int]:
    presences = watcher.payloads(Channel.PRESENCE, "pi-2/desk/d1")
    return sorted({p.seq for p in presences if isinstance(p, Presence)})
