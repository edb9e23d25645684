"""The edge agent: doors, badge readers and desk sensors in; the durable outbox and MQTT out.

Every event is written to the outbox before anything else happens to it, then
the link sends it and the server's ack releases it. A tap is also sent at once
as an MQTT v5 request; if no answer comes within `request_timeout_ms` (or the
broker is unreachable) the door decides from the cached allow-list and records
an offline decision, which reaches the audit log when the server is back.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel

from ruche.broker import (
    AgentConfig,
    Allowlist,
    Channel,
    Command,
    ContractError,
    Deny,
    DeskBadge,
    DeskSetup,
    DoorSetup,
    Lockdown,
    Presence,
    PresenceState,
    RawSummary,
    Reload,
    Tap,
    Topic,
    Unlock,
    badge_token,
    decode_payload,
    encode,
    encode_for,
)
from ruche.edge.allowlist import AllowlistIndex, FailPolicy, decide_offline
from ruche.edge.door import DoorRules, DoorSignal
from ruche.edge.files import write_atomic
from ruche.edge.gpio import DoorPins, GpioDoor
from ruche.edge.link import AgentLink, LinkOptions
from ruche.edge.nfc import NfcReader
from ruche.edge.outbox import Outbox, OutboxFull
from ruche.edge.pir import PirReader
from ruche.edge.presence import (
    PresenceConfig,
    PresenceEvent,
    PresenceUpdate,
    SensorResumed,
    SensorSilent,
)
from ruche.edge.radar import RadarReader
from ruche.edge.remote_config import RemoteConfig
from ruche.edge.settings import AgentSettings

log = logging.getLogger(__name__)

ALLOWLIST_FILE = "allowlist.json"
OUTBOX_FILE = "outbox.db"


@dataclass(frozen=True, slots=True)
class TapOutcome:
    """What a door did with one tap, and how it decided."""

    door: str
    allowed: bool
    source: Literal["online", "offline"]
    reason: str
    seq: int | None
    """The tap event's seq; None if the outbox refused it (full)."""
    elapsed_s: float


@dataclass
class AgentStats:
    taps_online: int = 0
    taps_offline: int = 0
    late_answers: int = 0
    outbox_refused: int = 0
    remote_unlocks: int = 0
    unknown_doors: int = 0
    bad_allowlists: int = 0


@dataclass
class _PendingTap:
    answered: threading.Event = field(default_factory=threading.Event)
    answer: Unlock | Deny | None = None


class Agent:
    """One agent process's worth of doors and desks."""

    def __init__(
        self,
        settings: AgentSettings,
        *,
        pin_factory: object | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.stats = AgentStats()
        self._clock = clock
        self._wall = wall
        self._site_key = settings.site_key_bytes
        self._policy = FailPolicy(settings.offline_policy)
        self._timeout = settings.request_timeout_ms / 1000
        self._pending: dict[str, _PendingTap] = {}
        self._pending_lock = threading.Lock()
        state = settings.state_dir
        state.mkdir(parents=True, exist_ok=True)
        self._allowlist_path = state / ALLOWLIST_FILE
        self._allowlist = self._load_cached_allowlist()
        self.outbox = Outbox(state / OUTBOX_FILE, capacity=settings.outbox_capacity)
        self.remote: RemoteConfig | None = None
        doors: tuple[DoorSetup, ...] = settings.doors
        desks: tuple[DeskSetup, ...] = settings.desks
        if settings.managed:
            self.remote = RemoteConfig(state, self._rewire_to, self._announce)
            if self.remote.running is not None:
                doors, desks = self.remote.running.doors, self.remote.running.desks
        mqtt = settings.mqtt
        self.link = AgentLink(
            LinkOptions(
                site=settings.site,
                agent=settings.agent,
                host=mqtt.host,
                port=mqtt.port,
                username=mqtt.username,
                password=mqtt.password.get_secret_value(),
                ca_file=mqtt.ca_file,
                keepalive=mqtt.keepalive,
                resend_after=mqtt.resend_after_s,
                reconnect_max=mqtt.reconnect_max_s,
            ),
            self.outbox,
            on_command=self._on_command,
            on_allowlist=self._on_allowlist,
            on_config=None if self.remote is None else self.remote.offer,
            faults=self._faults,
            config_state=(lambda: (None, None)) if self.remote is None else self.remote.state,
            clock=clock,
        )
        self._door_settings: dict[str, DoorSetup] = {}
        self._desk_settings = {d.id: d for d in desks}
        self._wiring = threading.Lock()
        self._started = False
        self.outcomes: deque[TapOutcome] = deque(maxlen=100)
        """The latest taps and what the doors did, for diagnosis."""
        self._readers: dict[str, NfcReader] = {}
        self._desks: dict[str, RadarReader | PirReader] = {}
        self._desk_readers: dict[str, NfcReader] = {}
        self._silent: set[str] = set()
        self._pin_factory = pin_factory
        self.doors: dict[str, GpioDoor] = {}
        try:
            for door in doors:
                self.doors[door.id] = self._open_door(door, pin_factory)
                self._door_settings[door.id] = door
        except BaseException:
            self._close_doors()
            self.outbox.close()
            raise

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Connect, and open every door's badge reader (NfcError names a missing one)."""
        self.link.start()
        try:
            with self._wiring:
                self._started = True
                for door in self._door_settings.values():
                    self._readers[door.id] = self._open_reader(door)
                for desk in self._desk_settings.values():
                    self._open_desk_parts(desk)
        except BaseException:
            self.stop()
            raise
        if self.remote is not None:
            self.remote.start()
        log.info(
            "agent %s/%s started%s: %d doors, %d desks, %d events waiting in the outbox",
            self.settings.site, self.settings.agent,
            "" if self.remote is None else f" (config version {self.remote.version})",
            len(self.doors), len(self._desks), self.outbox.depth,
        )  # fmt: skip

    def stop(self) -> None:
        if self.remote is not None:
            self.remote.stop()
        with self._wiring:
            self._started = False
            for reader in self._readers.values():
                reader.close()
            self._readers.clear()
            for sensor in self._desks.values():
                sensor.close()
            self._desks.clear()
            for reader in self._desk_readers.values():
                reader.close()
            self._desk_readers.clear()
        self.link.stop()
        self._close_doors()
        self.outbox.close()

    def wiring(self) -> tuple[tuple[DoorSetup, ...], tuple[DeskSetup, ...]]:
        """The doors and desks the agent runs now (its file's, or its config's)."""
        with self._wiring:
            return tuple(self._door_settings.values()), tuple(self._desk_settings.values())

    @property
    def allowlist_version(self) -> int | None:
        """The cached allow-list's version; None until one has been received."""
        return None if self._allowlist is None else self._allowlist.version

    # --- events -------------------------------------------------------------------

    def record(self, topic: Topic, make: Callable[[int], BaseModel]) -> tuple[int, bytes] | None:
        """Store one event durably and wake the sender; returns (seq, payload bytes).

        None when the outbox is full: the event is refused, counted and logged, and
        nothing already stored is lost.
        """
        wire_topic = str(topic)
        encoded: list[bytes] = []

        def build(seq: int) -> tuple[str, bytes]:
            encoded.append(encode_for(topic.channel, make(seq)))
            return wire_topic, encoded[-1]

        try:
            seq = self.outbox.append(build)
        except OutboxFull as exc:
            self.stats.outbox_refused += 1
            log.error("event on %s refused: %s", wire_topic, exc)  # noqa: TRY400 - expected state
            return None
        self.link.wake()
        return seq, encoded[0]

    def record_presence(
        self,
        desk: str,
        state: PresenceState,
        *,
        confidence: float = 1.0,
        heartbeat: bool = False,
        sensor: Literal["radar", "pir"] = "radar",
        raw: RawSummary | None = None,
    ) -> int | None:
        """A desk changed state (or a heartbeat repeats it)."""
        topic = Topic.presence(self.settings.site, self.settings.agent, desk)
        now, mono = self._wall(), self._clock()
        stored = self.record(
            topic,
            lambda seq: Presence(seq=seq, ts=now, mono=mono, state=state, confidence=confidence,
                                 heartbeat=heartbeat, sensor=sensor, raw=raw),
        )  # fmt: skip
        return None if stored is None else stored[0]

    def _read(self, door_id: str, uid: bytes, reader: str) -> None:
        outcome = self.tap(door_id, uid, reader)
        self.outcomes.append(outcome)

    def tap(self, door_id: str, uid: bytes, reader: str) -> TapOutcome:
        """A badge at a door: ask the server, else decide from the allow-list; act on it."""
        started = self._clock()
        door = self.doors.get(door_id)
        if door is None:
            self.stats.unknown_doors += 1
            log.error("tap on unknown door %r", door_id)
            return TapOutcome(door_id, False, "offline", "unknown_door", None, 0.0)
        token = badge_token(self._site_key, uid)
        request_id = uuid.uuid4().hex
        pending = _PendingTap()
        with self._pending_lock:
            self._pending[request_id] = pending
        try:
            topic = Topic.tap(self.settings.site, self.settings.agent, door_id)
            now, mono = self._wall(), self._clock()
            stored = self.record(
                topic,
                lambda seq: Tap(seq=seq, ts=now, mono=mono, token=token, reader=reader,
                                request_id=request_id),
            )  # fmt: skip
            seq = None if stored is None else stored[0]
            asked = stored is not None and self.link.request(str(topic), stored[1], request_id)
            if asked:
                pending.answered.wait(self._timeout)
        finally:
            with self._pending_lock:
                self._pending.pop(request_id, None)
        answer = pending.answer
        if isinstance(answer, Unlock):
            self.stats.taps_online += 1
            door.unlock(answer.ms)
            return self._outcome(
                door_id, allowed=True, source="online", reason="server", seq=seq, started=started
            )
        if isinstance(answer, Deny):
            self.stats.taps_online += 1
            return self._outcome(
                door_id, allowed=False, source="online", reason=answer.reason, seq=seq,
                started=started,
            )  # fmt: skip
        return self._decide_offline(door_id, token, seq, started)

    def _decide_offline(
        self, door_id: str, token: str, tap_seq: int | None, started: float
    ) -> TapOutcome:
        self.stats.taps_offline += 1
        verdict = decide_offline(self._allowlist, token, door_id, self._wall(), self._policy)
        door, setup = self.doors.get(door_id), self._door_settings.get(door_id)
        if verdict.allowed and door is not None and setup is not None:  # not rewired away
            door.unlock(setup.unlock_ms)
        outcome = self._outcome(
            door_id, allowed=verdict.allowed, source="offline", reason=verdict.reason,
            seq=tap_seq, started=started,
        )  # fmt: skip
        if tap_seq is not None:
            topic = Topic.door_event(self.settings.site, self.settings.agent, door_id)
            now, mono = self._wall(), self._clock()
            self.record(
                topic,
                lambda seq: verdict.to_payload(token=token, tap_seq=tap_seq, seq=seq, ts=now,
                                               mono=mono),
            )  # fmt: skip
        log.info("offline decision at %s: %s (%s)", door_id,
                 "allowed" if verdict.allowed else "denied", verdict.reason)  # fmt: skip
        return outcome

    def _outcome(
        self,
        door: str,
        *,
        allowed: bool,
        source: Literal["online", "offline"],
        reason: str,
        seq: int | None,
        started: float,
    ) -> TapOutcome:
        return TapOutcome(door, allowed, source, reason, seq, self._clock() - started)

    # --- desks --------------------------------------------------------------------

    def _open_desk_parts(self, desk: DeskSetup) -> None:
        self._desks[desk.id] = self._open_desk(desk)
        if desk.reader is not None:
            self._desk_readers[desk.id] = NfcReader(
                device=desk.reader, reader_id=f"{desk.id}-reader",
                on_tap=functools.partial(self._desk_read, desk.id),
            )  # fmt: skip

    def _desk_read(self, desk_id: str, uid: bytes, _reader: str) -> None:
        """A badge on a desk's reader: the member checks in at the desk (a `desk_badge`
        event, through the outbox like every other; the server attributes the desk's
        session to them)."""
        token = badge_token(self._site_key, uid)
        topic = Topic.desk_badge(self.settings.site, self.settings.agent, desk_id)
        now, mono = self._wall(), self._clock()
        self.record(topic, lambda seq: DeskBadge(seq=seq, ts=now, mono=mono, token=token))
        log.info("desk %s: badge check-in", desk_id)

    def _open_desk(self, desk: DeskSetup) -> RadarReader | PirReader:
        config = PresenceConfig(
            arrive_delay=desk.arrive_s,
            leave_delay=desk.leave_s,
            heartbeat_interval=desk.heartbeat_s,
        )
        if desk.serial is not None:
            return RadarReader(
                port=desk.serial,
                desk=desk.id,
                baudrate=desk.baudrate,
                config=config,
                on_event=functools.partial(self._on_presence_event, desk.id, "radar"),
                clock=self._clock,
            )
        assert desk.pir_pin is not None  # noqa: S101 - DeskSettings guarantees one sensor
        return PirReader(
            pin=desk.pir_pin,
            desk=desk.id,
            config=config,
            on_event=functools.partial(self._on_presence_event, desk.id, "pir"),
            pin_factory=self._pin_factory,
            clock=self._clock,
        )

    def _on_presence_event(
        self, desk: str, sensor: Literal["radar", "pir"], event: PresenceEvent
    ) -> None:
        if isinstance(event, PresenceUpdate):
            self.record_presence(
                desk,
                event.state,
                confidence=event.confidence,
                heartbeat=event.heartbeat,
                sensor=sensor,
                raw=event.raw,
            )
            if not event.heartbeat:
                log.info("desk %s %s", desk, event.state.value)
        elif isinstance(event, SensorSilent):
            self._silent.add(desk)
            self.link.announce()
            log.warning("desk %s: sensor silent since %.1f s", desk, event.last_report_at)
        elif isinstance(event, SensorResumed):
            self._silent.discard(desk)
            self.link.announce()
            log.info("desk %s: sensor back after %.1f s", desk, event.silent_for)

    def _announce(self) -> None:
        self.link.announce()

    def _faults(self) -> tuple[str, ...]:
        return tuple(sorted(self._silent))

    # --- doors --------------------------------------------------------------------

    def _open_reader(self, door: DoorSetup) -> NfcReader:
        return NfcReader(device=door.reader, reader_id=f"{door.id}-reader",
                         on_tap=functools.partial(self._read, door.id))  # fmt: skip

    def _open_door(self, door: DoorSetup, pin_factory: object | None) -> GpioDoor:
        pins = DoorPins(
            relay_pin=door.relay_pin,
            relay_active_high=door.relay_active_high,
            contact_pin=door.contact_pin,
            exit_pin=door.exit_pin,
        )
        rules = DoorRules(exit_ms=door.exit_ms, held_open_s=door.held_open_s)
        return GpioDoor(
            pins=pins,
            rules=rules,
            on_signal=lambda signal: self._record_door_signal(door.id, signal),
            pin_factory=pin_factory,
            clock=self._clock,
        )

    def _record_door_signal(self, door_id: str, signal: DoorSignal) -> None:
        topic = Topic.door_event(self.settings.site, self.settings.agent, door_id)
        now = self._wall()
        self.record(topic, lambda seq: signal.to_payload(seq=seq, ts=now))
        level = logging.WARNING if signal.kind in ("forced", "held_open") else logging.INFO
        log.log(level, "door %s %s", door_id, signal.kind)

    def _close_doors(self) -> None:
        for door in self.doors.values():
            door.close()
        self.doors.clear()

    # --- rewiring -----------------------------------------------------------------

    def _rewire_to(self, config: AgentConfig) -> None:
        """Run `config`'s doors and desks: close what changed or went, open what changed or
        came, leave the rest running. If anything cannot open, put back what was running
        and raise (`RemoteConfig` refuses the version)."""
        doors = {d.id: d for d in config.doors}
        desks = {d.id: d for d in config.desks}
        with self._wiring:
            old_doors = [d for i, d in self._door_settings.items() if doors.get(i) != d]
            old_desks = [d for i, d in self._desk_settings.items() if desks.get(i) != d]
            new_doors = [d for i, d in doors.items() if self._door_settings.get(i) != d]
            new_desks = [d for i, d in desks.items() if self._desk_settings.get(i) != d]
            for door in old_doors:
                self._close_door_parts(door.id)
            for desk in old_desks:
                self._close_desk_parts(desk.id)
            try:
                self._open_parts(new_doors, new_desks)
            except BaseException:
                for door in new_doors:
                    self._close_door_parts(door.id)
                for desk in new_desks:
                    self._close_desk_parts(desk.id)
                try:
                    self._open_parts(old_doors, old_desks)
                except Exception:
                    log.exception("the previous doors and desks did not all open again")
                raise

    def _open_parts(self, doors: list[DoorSetup], desks: list[DeskSetup]) -> None:
        for door in doors:
            self.doors[door.id] = self._open_door(door, self._pin_factory)
            self._door_settings[door.id] = door
            if self._started:
                self._readers[door.id] = self._open_reader(door)
        for desk in desks:
            self._desk_settings[desk.id] = desk
            if self._started:
                self._open_desk_parts(desk)

    def _close_door_parts(self, door_id: str) -> None:
        self._door_settings.pop(door_id, None)
        reader = self._readers.pop(door_id, None)
        if reader is not None:
            reader.close()
        door = self.doors.pop(door_id, None)
        if door is not None:
            door.close()

    def _close_desk_parts(self, desk_id: str) -> None:
        self._desk_settings.pop(desk_id, None)
        self._silent.discard(desk_id)
        sensor = self._desks.pop(desk_id, None)
        if sensor is not None:
            sensor.close()
        reader = self._desk_readers.pop(desk_id, None)
        if reader is not None:
            reader.close()

    # --- from the server ----------------------------------------------------------

    def _on_command(self, command: Command) -> None:
        if isinstance(command, Unlock | Deny) and command.request_id is not None:
            with self._pending_lock:
                pending = self._pending.get(command.request_id)
            if pending is not None:
                pending.answer = command
                pending.answered.set()
                return
            if isinstance(command, Deny) or command.request_id:
                self.stats.late_answers += 1
                log.info("answer %s came after the door decided offline", command.request_id)
                return
        if isinstance(command, Unlock):
            door = self.doors.get(command.door)
            if door is None:
                log.warning("remote unlock for unknown door %r", command.door)
                return
            self.stats.remote_unlocks += 1
            door.unlock(command.ms)
            log.info("remote unlock of %s for %d ms", command.door, command.ms)
        elif isinstance(command, Lockdown):
            targets = list(self.doors) if command.door is None else [command.door]
            for door_id in targets:
                if door_id in self.doors:
                    self.doors[door_id].set_lockdown(active=command.active)
            log.warning("lockdown %s on %s", "on" if command.active else "off", targets)
        elif isinstance(command, Reload):
            log.info("reload requested: the allow-list and the config come retained at connect")

    def _on_allowlist(self, allowlist: Allowlist) -> None:
        # On disk first: a version the agent reports is one a restart will still have.
        write_atomic(self._allowlist_path, encode(allowlist))
        self._allowlist = AllowlistIndex.build(allowlist)
        log.info("allow-list v%d: %d entries, %d revoked, expires %s", allowlist.version,
                 len(allowlist.entries), len(allowlist.revoked), allowlist.expires)  # fmt: skip

    def _load_cached_allowlist(self) -> AllowlistIndex | None:
        try:
            data = self._allowlist_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            payload = decode_payload(Channel.ALLOWLIST, data)
        except ContractError as exc:
            self.stats.bad_allowlists += 1
            log.error("cached allow-list unreadable, ignored: %s", exc)  # noqa: TRY400
            return None
        assert isinstance(payload, Allowlist)  # noqa: S101 - the channel's schema says so
        return AllowlistIndex.build(payload)
