"""The agent with its doors on gpiozero mock pins, against a real Mosquitto.

The server is played by the stand-in receiver (which stores events and acks
them, and answers taps when told to) or is absent.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from gpiozero.pins.mock import MockFactory

from ruche.broker import (
    AllowEntry,
    Allowlist,
    Channel,
    Deny,
    DeskBadge,
    DoorForced,
    DoorHeldOpen,
    OfflineDecision,
    Tap,
    Topic,
    Unlock,
    Window,
    badge_token,
    decode_payload,
    encode,
)
from ruche.edge.agent import Agent
from ruche.edge.gpio import DoorPins
from ruche.sim.door import ScriptedPerson, SimDoor, force_through, walk_through
from ruche.sim.nfc import BadgeEmulator
from ruche.sim.receiver import EventReceiver
from ruche.sim.services.sockets import free_port
from ruche.sim.testing.waits import wait_until

pytestmark = pytest.mark.integration

SITE_KEY = "00112233445566778899aabbccddeeff"
# 8-byte UIDs: nfcpy emulates FeliCa cards only, whose IDm is 8 bytes.
VALID = bytes.fromhex("0114b3c2d1e0f001")
REVOKED = bytes.fromhex("0114b3c2d1e0f002")
UNKNOWN = bytes.fromhex("0114b3c2d1e0f0ff")
PINS = DoorPins(relay_pin=17, contact_pin=27, exit_pin=22)


def token(uid: bytes) -> str:
    return badge_token(bytes.fromhex(SITE_KEY), uid)


@pytest.fixture
def reader_device() -> str:
    """nfcpy's UDP driver: a BadgeEmulator on the same device string is the badge."""
    return f"udp:127.0.0.1:{free_port()}"


@pytest.fixture
def door_rig(edge_agent, reader_device) -> tuple[Agent, SimDoor]:
    rig = edge_agent(held_open_s=1.0, sim_door=True, reader=reader_device)
    return rig.agent, rig.sim


def publish_allowlist(site, agent: str = "agent-a") -> None:
    now = datetime.now(UTC)
    allowlist = Allowlist(
        version=7,
        issued=now,
        expires=now + timedelta(hours=4),
        entries=(
            AllowEntry(
                token=token(VALID),
                windows=(Window(start=now - timedelta(hours=1), end=now + timedelta(hours=3)),),
            ),
            AllowEntry(
                token=token(REVOKED),
                windows=(Window(start=now - timedelta(hours=1), end=now + timedelta(hours=3)),),
            ),
        ),
        revoked=(token(REVOKED),),
    )
    server = site.connect_server()
    server.publish(str(Topic.allowlist(site.site, agent)), encode(allowlist), retain=True)


def receiver_for(site, **kwargs) -> EventReceiver:
    server = site.broker.server
    receiver = EventReceiver(host=site.broker.host, port=site.broker.port,
                             username=server.username,
                             password=server.password.get_secret_value(), site=site.site,
                             **kwargs)  # fmt: skip
    receiver.start()
    return receiver


class TestServerSilent:
    """With no server answering, the cached allow-list decides within 500 ms."""

    def test_cached_badge_opens_and_others_do_not(self, door_rig, site):
        agent, sim = door_rig
        publish_allowlist(site)
        wait_until(lambda: agent.allowlist_version == 7)

        valid = agent.tap("front", VALID, "reader-1")
        assert valid.allowed
        assert valid.source == "offline"
        assert valid.reason == "allowlist_ok"
        assert valid.elapsed_s < 0.5
        assert sim.released, "the strike is energised"

        revoked = agent.tap("front", REVOKED, "reader-1")
        unknown = agent.tap("front", UNKNOWN, "reader-1")
        assert (revoked.allowed, revoked.reason) == (False, "revoked")
        assert (unknown.allowed, unknown.reason) == (False, "unknown_badge")

        # The server comes back: the taps and the offline decisions reach it, in order.
        receiver = receiver_for(site)
        try:
            assert receiver.wait_for(6, timeout=15), receiver.stats
            stored = [e.payload for e in receiver.snapshot()]
            taps = [p for p in stored if isinstance(p, Tap)]
            decisions = [p for p in stored if isinstance(p, OfflineDecision)]
            assert [t.token for t in taps] == [token(VALID), token(REVOKED), token(UNKNOWN)]
            assert [(d.allowed, d.reason, d.tap_seq) for d in decisions] == [
                (True, "allowlist_ok", taps[0].seq),
                (False, "revoked", taps[1].seq),
                (False, "unknown_badge", taps[2].seq),
            ]
            assert all(d.allowlist_version == 7 for d in decisions)
        finally:
            receiver.stop()

    def test_allowlist_survives_an_agent_restart(self, door_rig, site):
        agent, _ = door_rig
        publish_allowlist(site)
        wait_until(lambda: agent.allowlist_version == 7)
        agent.stop()
        # A new process on the same state folder, before it reaches the broker.
        restarted = Agent(agent.settings, pin_factory=MockFactory())
        try:
            assert restarted.allowlist_version == 7
            verdict = restarted.tap("front", VALID, "reader-1")
            assert (verdict.allowed, verdict.source) == (True, "offline")
        finally:
            restarted.stop()


class TestBadgeAtTheReader:
    """A real badge read through nfcpy's UDP driver opens the door from the cache."""

    def test_emulated_badge_opens_within_500_ms_of_the_read(self, door_rig, site, reader_device):
        agent, sim = door_rig
        publish_allowlist(site)
        wait_until(lambda: agent.allowlist_version == 7)
        with BadgeEmulator(device=reader_device) as badge:
            started = time.monotonic()
            badge.present(VALID)
            wait_until(lambda: sim.released, timeout=3.0)
            presented_to_open = time.monotonic() - started
            badge.remove()
            badge.present(UNKNOWN)
            wait_until(lambda: len(agent.outcomes) == 2, timeout=3.0)
            badge.remove()
        opened, refused = agent.outcomes
        assert (opened.allowed, opened.source, opened.reason) == (True, "offline", "allowlist_ok")
        assert opened.elapsed_s < 0.5, "read to decision and relay"
        assert (refused.allowed, refused.reason) == (False, "unknown_badge")
        print(f"\nbadge presented to strike released: {presented_to_open * 1000:.0f} ms "
              f"(nfcpy's UDP reader polls about once a second); read to unlock "
              f"{opened.elapsed_s * 1000:.0f} ms")  # fmt: skip


class TestServerAnswers:
    """An answering server decides; the agent acts on its answer."""

    def test_unlock_and_deny_from_the_server(self, door_rig, site):
        agent, sim = door_rig

        def answer(_topic: Topic, tap: Tap) -> Unlock | Deny:
            if tap.token == token(VALID):
                return Unlock(door="front", ms=1500, request_id=tap.request_id)
            return Deny(door="front", request_id=tap.request_id, reason="unknown_badge")

        receiver = receiver_for(site, answer_taps=answer)
        try:
            allowed = agent.tap("front", VALID, "reader-1")
            assert (allowed.allowed, allowed.source) == (True, "online")
            assert sim.released
            denied = agent.tap("front", UNKNOWN, "reader-1")
            assert (denied.allowed, denied.source, denied.reason) == (
                False, "online", "unknown_badge",
            )  # fmt: skip
            assert agent.stats.taps_offline == 0
        finally:
            receiver.stop()


class TestDoorAlarms:
    """Forced-open and held-open alarms become door events at the server."""

    def test_forced_open(self, door_rig, site):
        _, sim = door_rig
        receiver = receiver_for(site)
        try:
            ScriptedPerson(sim).run(force_through(hold_s=0.2))
            wait_until(lambda: any(isinstance(e.payload, DoorForced)
                                   for e in receiver.snapshot()))  # fmt: skip
        finally:
            receiver.stop()

    def test_held_open(self, door_rig, site):
        agent, sim = door_rig
        receiver = receiver_for(site)
        try:
            agent.doors["front"].unlock(2000)
            ScriptedPerson(sim).run(walk_through(hold_s=1.6, wait_s=2.0))
            wait_until(lambda: len(receiver.snapshot()) >= 3)
            kinds = [getattr(e.payload, "kind", None) for e in receiver.snapshot()]
            assert kinds == ["opened", "held_open", "closed"]
            held = receiver.snapshot()[1].payload
            assert isinstance(held, DoorHeldOpen)
            assert held.open_s >= 1.0
        finally:
            receiver.stop()


class TestDeskReader:
    """A desk with a badge reader: a badge laid on it checks the member in at the desk, a
    `desk_badge` event from the real agent process."""

    def test_check_in_through_the_agent_process(self, site, tmp_path):
        account = site.agents["agent-b"]
        reader = f"udp:127.0.0.1:{free_port()}"
        config = tmp_path / "agent.toml"
        config.write_text(
            f'site = "{site.site}"\nagent = "agent-b"\nsite_key = "{SITE_KEY}"\n'
            f'state_dir = "{tmp_path / "state"}"\ngpio = "mock"\n\n'
            f'[mqtt]\nhost = "{site.broker.host}"\nport = {site.broker.port}\n'
            f'username = "{account.username}"\n'
            f'password = "{account.password.get_secret_value()}"\n\n'
            f'[[desks]]\nid = "d7"\npir_pin = 5\nreader = "{reader}"\n'
        )
        server = site.connect_server()
        server.subscribe(str(Topic.desk_badge(site.site, "agent-b", "d7")))
        uid = bytes.fromhex("0a0b0c0d0e0f1011")
        with BadgeEmulator(device=reader) as card:
            agent = subprocess.Popen(
                [sys.executable, "-m", "ruche", "edge", "run", "--config", str(config)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            )  # fmt: skip
            try:
                time.sleep(1.5)  # the reader opens
                card.tap(uid, hold_s=1.5)
                (message,) = server.take(1, timeout=20)
            finally:
                agent.send_signal(signal.SIGTERM)
                output, _ = agent.communicate(timeout=30)
        payload = decode_payload(Channel.DESK_BADGE, message.payload)
        assert isinstance(payload, DeskBadge)
        assert payload.token == badge_token(bytes.fromhex(SITE_KEY), uid)
        assert agent.returncode == 0, output
