"""Plays a planned day (`ruche.sim.day`) to a real broker, as the agents themselves would.

```python
summary = play_day(plan, host="127.0.0.1", port=1883, accounts=agent_accounts, speed=600)
summary.acked == plan.total
```

Each agent of the plan gets its own MQTT v5 connection under its own account (a
`ruche.paho_internals.BufferedClient`, Nagle off), subscribes to its `ack` and `cmd` topics, and
publishes its retained `status` (with the last will), as `ruche.edge.link` does. Then:

- **The clock.** With `speed`, the simulated clock runs `speed` simulated seconds per real
  second from `begin` (default: the day's start; events before it go out at once). With
  `speed=None` it runs as fast as acks allow: the next event's time comes as soon as its
  agent has fewer than `window` events waiting for an ack.
- **The outbox.** An event whose time has come joins its agent's outbox and stays there
  until the server's `ack` covers it. Each agent sends its outbox in seq order within a
  go-back-N window (`ruche.edge.delivery.DeliveryWindow`, the edge's own): after a
  reconnect, or when the ack has not moved for `resend_after` seconds with events out,
  it resends from the first unacknowledged event. The server dedupes on `(agent, seq)`.
- **Taps.** When a tap's time comes it is also sent at once as an MQTT v5 request,
  response topic the agent's `cmd` topic and correlation data its `request_id`, ahead of
  the outbox (which sends it again in order), as `ruche.edge.agent` does. The answers
  (`unlock` or `deny`) are collected in the summary; the plan does not change with them.
- **Progress.** `on_progress` is called about every `progress_every` seconds, and once at
  the end, with the simulated clock and how many events were released, sent and acked.

`play_day` returns when every event is acked (and the taps' answers are in, or
`answer_wait` has passed), with a `DaySummary`. It raises `DayPlayError` when an agent
cannot log in, or when no ack moves for `ack_timeout` seconds while events wait.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ruche import __version__
from ruche.broker import (
    Ack,
    Channel,
    ContractError,
    Deny,
    Status,
    Tap,
    Topic,
    Unlock,
    decode,
    encode,
    encode_for,
)
from ruche.broker.accounts import AgentAccount
from ruche.edge.delivery import DeliveryWindow
from ruche.mqtt import no_delay, publish_properties, stop_client
from ruche.paho_internals import BufferedClient
from ruche.sim.day import DayPlan, PlannedEvent

__all__ = ["DayPlayError", "DayProgress", "DaySummary", "TapAnswer", "play_day"]

log = logging.getLogger(__name__)

TapAnswer = Literal["unlock", "deny"]


class DayPlayError(RuntimeError):
    """The day could not be played (a refused login, acks that stopped); the message says
    which agent and what to check."""


@dataclass(frozen=True, slots=True)
class DayProgress:
    """How far the day has got."""

    clock: datetime
    """The simulated time, in the site's timezone."""
    released: int
    """Events whose time has come (in an outbox)."""
    sent: int
    """Publishes of events, resends included."""
    acked: int
    total: int


@dataclass(frozen=True)
class DaySummary:
    """What playing a day did."""

    total: int
    events: Mapping[str, int]
    """Events per channel."""
    acked: int
    sent: int
    """Publishes of events, resends included (tap requests not counted)."""
    resends: int
    """Times an agent went back to its first unacked event (a reconnect or a stall)."""
    reconnects: int
    answers: Mapping[tuple[str, int], TapAnswer]
    """The server's answer to each tap request, by the tap's `(agent, seq)`."""
    unanswered: tuple[tuple[str, int], ...]
    """Taps whose request got no answer."""
    elapsed_s: float
    speed: float | None


# --- one agent ---------------------------------------------------------------------------


class _AgentStream:
    """One simulated agent: its connection, its outbox (the plan's events released so far)
    and its delivery window. The player's thread sends; paho's thread takes acks."""

    def __init__(
        self,
        account: AgentAccount,
        events: tuple[PlannedEvent, ...],
        *,
        host: str,
        port: int,
        window: int,
        resend_after: float,
        wake: threading.Condition,
    ) -> None:
        self.agent = account.id
        self.site = account.site
        self.events = events
        self.wire = [(str(e.topic), encode_for(e.topic.channel, e.payload)) for e in events]
        self.first = events[0].payload.seq if events else 1
        self.last = self.first + len(events) - 1
        self.released = 0
        self.sent = 0
        self.resends = 0
        self.connects = 0
        self.refused: ReasonCode | None = None
        self.answers: dict[int, TapAnswer] = {}
        self.requests: dict[str, int] = {}
        self._wake = wake
        self._lock = threading.Lock()
        self._window = DeliveryWindow(
            size=window, resend_after=resend_after, acked=self.first - 1, sent_upto=self.first - 1
        )
        self._connected = False
        self._subscribed = threading.Event()
        self._generation = 0
        self._started = time.monotonic()
        self._topics = {
            Channel.CMD: str(Topic.cmd(self.site, self.agent)),
            Channel.ACK: str(Topic.ack(self.site, self.agent)),
        }
        self._status_topic = str(Topic.status(self.site, self.agent))
        self.client = BufferedClient(
            CallbackAPIVersion.VERSION2,
            client_id=account.client_id,
            protocol=mqtt.MQTTv5,
        )
        self.client.username_pw_set(account.username, account.password.get_secret_value())
        self.client.reconnect_delay_set(min_delay=1, max_delay=5)
        self.client.max_inflight_messages_set(window)
        self.client.will_set(self._status_topic, self._status(online=False), qos=1, retain=True)
        self.client.on_socket_open = no_delay
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._host, self._port = host, port

    # --- state the player reads ---------------------------------------------------

    @property
    def acked(self) -> int:
        """How many of the released events the server holds."""
        with self._lock:
            top = min(self._window.acked, self.first + self.released - 1)
        return max(0, top - self.first + 1)

    @property
    def waiting(self) -> int:
        """Released events not acked yet: the outbox's depth."""
        return self.released - self.acked

    @property
    def done(self) -> bool:
        return self.released == len(self.events) and self.acked == len(self.events)

    # --- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        self.client.connect_async(self._host, self._port, keepalive=30)
        self.client.loop_start()

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self._subscribed.wait(0.05):
            if self.refused is not None:
                raise DayPlayError(
                    f"the broker refused agent {self.site}/{self.agent}: {self.refused} "
                    "(check its account: username `site/agent` and password)"
                )
            if time.monotonic() > deadline:
                raise DayPlayError(
                    f"agent {self.site}/{self.agent} could not connect to "
                    f"{self._host}:{self._port} in {timeout:g} s: is the broker up?"
                )

    def stop(self) -> None:
        if self.client.is_connected():
            info = self.client.publish(
                self._status_topic, self._status(online=False), qos=1, retain=True
            )
            info.wait_for_publish(timeout=2)
        stop_client(self.client)

    # --- the player's thread ------------------------------------------------------

    def release(self, index: int) -> None:
        """The event at `index` has come: into the outbox; a tap also goes out as a request."""
        self.released = index + 1
        event = self.events[index]
        if isinstance(event.payload, Tap):
            self._request(index, event.payload)

    def pump(self, now: float) -> None:
        """Send what the window allows of the released events (resending after a stall)."""
        with self._lock:
            if not self._connected:
                return
            if self._window.sent_upto <= self._window.acked:
                # Nothing in flight: the stall timer starts with what goes out now, not at
                # the last ack, however long ago that was.
                self._window.last_progress = now
            elif self._window.stalled(now):
                self.resends += 1
                log.info("%s: no ack for a while, resending from seq %d", self.agent,
                         self._window.acked + 1)  # fmt: skip
            start = self._window.sent_upto - self.first + 1
            upto = min(self.released, start + self._window.room())
            generation = self._generation
        if upto <= start:
            return
        for topic, payload in self.wire[start:upto]:
            self.client.publish(topic, payload, qos=1)
        self.sent += upto - start
        with self._lock:
            # A reconnect meanwhile rewound the window: what went out before it does not count.
            if generation == self._generation:
                self._window.sent(self.first + upto - 1)

    def _request(self, index: int, tap: Tap) -> None:
        if not self.client.is_connected():
            return  # the edge decides offline then; the outbox still sends the tap
        props = publish_properties(
            response_topic=self._topics[Channel.CMD], correlation=tap.request_id.encode()
        )
        with self._lock:
            self.requests[tap.request_id] = self.first + index
        topic, payload = self.wire[index]
        self.client.publish(topic, payload, qos=1, properties=props)

    # --- paho's thread ------------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        _u: object,
        _f: mqtt.ConnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.refused = reason
            return
        client.subscribe([(topic, 1) for topic in self._topics.values()])
        client.publish(self._status_topic, self._status(online=True), qos=1, retain=True)
        with self._wake:
            with self._lock:
                self.connects += 1
                if self.connects > 1:
                    self.resends += 1
                self._connected = True
                self._generation += 1
                self._window.connected(time.monotonic())
            self._wake.notify_all()

    def _on_disconnect(
        self,
        _c: mqtt.Client,
        _u: object,
        _f: mqtt.DisconnectFlags,
        reason: ReasonCode,
        _p: Properties | None,
    ) -> None:
        with self._lock:
            self._connected = False
            self._generation += 1
        log.info("%s: disconnected (%s); paho reconnects", self.agent, reason)

    def _on_subscribe(self, *_: object) -> None:
        self._subscribed.set()

    def _on_message(self, _c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        try:
            payload = decode(msg.topic, msg.payload).payload
        except ContractError as exc:
            log.warning("%s: bad message on %s: %s", self.agent, msg.topic, exc)
            return
        if isinstance(payload, Ack):
            with self._wake:
                with self._lock:
                    self._window.ack(payload.seq, time.monotonic())
                self._wake.notify_all()
        elif isinstance(payload, Unlock | Deny) and payload.request_id is not None:
            with self._lock:
                seq = self.requests.get(payload.request_id)
                if seq is not None:
                    self.answers[seq] = "unlock" if isinstance(payload, Unlock) else "deny"

    def _status(self, *, online: bool) -> bytes:
        return encode(
            Status(
                state="online" if online else "offline",
                ts=datetime.now(UTC),
                version=__version__,
                uptime_s=max(0.0, time.monotonic() - self._started) if online else 0.0,
                outbox_depth=max(0, self.waiting) if online else 0,
            )
        )


# --- the day -----------------------------------------------------------------------------


def play_day(
    plan: DayPlan,
    *,
    host: str,
    port: int,
    accounts: Iterable[AgentAccount],
    speed: float | None = None,
    begin: datetime | None = None,
    window: int = 500,
    resend_after: float = 2.0,
    ack_timeout: float = 60.0,
    answer_wait: float = 2.0,
    connect_timeout: float = 15.0,
    on_progress: Callable[[DayProgress], None] | None = None,
    progress_every: float = 1.0,
) -> DaySummary:
    """Play `plan` to the broker at `host:port` as its agents; see the module docstring.

    `accounts` must hold an account for every agent of the plan (at the plan's site).
    """
    if speed is not None and not (math.isfinite(speed) and speed > 0):
        raise ValueError(
            "speed must be a positive number of simulated seconds a second, or None "
            f"(as fast as acks allow), not {speed}"
        )
    if window < 1:
        raise ValueError(f"window must be at least 1 event, not {window}")
    if begin is not None and begin.tzinfo is None:
        raise ValueError("begin must be a timezone-aware datetime")
    by_agent = {a.id: a for a in accounts if a.site == plan.site}
    missing = sorted(set(plan.events) - set(by_agent))
    if missing:
        raise ValueError(f"no account for agents {missing} at site {plan.site}")
    wake = threading.Condition()
    streams = {
        agent: _AgentStream(
            by_agent[agent],
            events,
            host=host,
            port=port,
            window=window,
            resend_after=resend_after,
            wake=wake,
        )
        for agent, events in plan.events.items()
    }
    driver = _Driver(
        plan,
        streams,
        wake,
        speed=speed,
        begin=begin or plan.start,
        window=window,
        ack_timeout=ack_timeout,
        on_progress=on_progress,
    )
    try:
        for stream in streams.values():
            stream.start()
        for stream in streams.values():
            stream.wait_ready(connect_timeout)
        elapsed = driver.run(progress_every)
        _wait_for_answers(streams, plan, answer_wait)
    finally:
        for stream in streams.values():
            stream.stop()
    answers = {
        (agent, seq): answer
        for agent, stream in streams.items()
        for seq, answer in stream.answers.items()
    }
    return DaySummary(
        total=plan.total,
        events=dict(Counter(e.topic.channel.value for s in streams.values() for e in s.events)),
        acked=sum(s.acked for s in streams.values()),
        sent=sum(s.sent for s in streams.values()),
        resends=sum(s.resends for s in streams.values()),
        reconnects=sum(max(0, s.connects - 1) for s in streams.values()),
        answers=answers,
        unanswered=tuple((t.agent, t.seq) for t in plan.taps if (t.agent, t.seq) not in answers),
        elapsed_s=round(elapsed, 3),
        speed=speed,
    )


class _Driver:
    """The simulated clock: releases events as it reaches them and pumps the outboxes."""

    def __init__(
        self,
        plan: DayPlan,
        streams: Mapping[str, _AgentStream],
        wake: threading.Condition,
        *,
        speed: float | None,
        begin: datetime,
        window: int,
        ack_timeout: float,
        on_progress: Callable[[DayProgress], None] | None,
    ) -> None:
        self.streams = streams
        self.wake = wake
        self.speed = speed
        self.window = window
        self.ack_timeout = ack_timeout
        self.on_progress = on_progress
        self.tz = ZoneInfo(plan.timezone)
        # Instants in UTC: arithmetic on datetimes sharing a ZoneInfo is wall-clock arithmetic.
        self.begin = begin.astimezone(UTC)
        self.clock = self.begin
        self.timeline = [
            (event.payload.ts.astimezone(UTC), stream, i)
            for agent, stream in streams.items()
            for i, event in enumerate(plan.events[agent])
        ]
        self.timeline.sort(key=lambda item: (item[0], item[1].agent, item[2]))
        self.next = 0
        self.started = 0.0
        self._acked = -1
        self._acked_at = 0.0

    def run(self, progress_every: float) -> float:
        """Until every event is acked; the real seconds it took."""
        self.started = self._acked_at = last_report = time.monotonic()
        while True:
            now = time.monotonic()
            self._release(now)
            for stream in self.streams.values():
                stream.pump(now)
            if now - last_report >= progress_every:
                last_report = now
                self._report()
            if self.next == len(self.timeline) and all(s.done for s in self.streams.values()):
                self._report()
                return now - self.started
            self._watch_acks(now)
            with self.wake:
                self.wake.wait(self._pause())

    def _release(self, now: float) -> None:
        if self.speed is not None:
            moved = self.begin + timedelta(seconds=(now - self.started) * self.speed)
            self.clock = max(self.clock, moved)
        while self.next < len(self.timeline):
            at, stream, index = self.timeline[self.next]
            if self.speed is not None and at > self.clock:
                return
            if self.speed is None:
                if stream.waiting >= self.window:
                    return  # as fast as acks allow: this agent's outbox is full
                self.clock = max(self.clock, at)
            stream.release(index)
            self.next += 1

    def _watch_acks(self, now: float) -> None:
        acked = sum(s.acked for s in self.streams.values())
        if acked != self._acked:
            self._acked, self._acked_at = acked, now
            return
        waiting = {a: s.waiting for a, s in self.streams.items() if s.waiting}
        if waiting and now - self._acked_at > self.ack_timeout:
            raise DayPlayError(
                f"no ack for {self.ack_timeout:g} s with events waiting {waiting}: is the "
                "server's ingestion running and subscribed to this broker?"
            )

    def _pause(self) -> float:
        """How long to wait for an ack before looking again."""
        pause = 0.05
        if self.speed is not None and self.next < len(self.timeline):
            due = (self.timeline[self.next][0] - self.clock).total_seconds() / self.speed
            pause = min(pause, max(0.0, due))
        return pause

    def _report(self) -> None:
        if self.on_progress is None:
            return
        self.on_progress(
            DayProgress(
                clock=self.clock.astimezone(self.tz),
                released=self.next,
                sent=sum(s.sent for s in self.streams.values()),
                acked=sum(s.acked for s in self.streams.values()),
                total=len(self.timeline),
            )
        )


def _wait_for_answers(streams: Mapping[str, _AgentStream], plan: DayPlan, wait: float) -> None:
    """Acks usually come after the answers; give late answers `wait` seconds."""
    deadline = time.monotonic() + wait
    asked = {(t.agent, t.seq) for t in plan.taps}
    while time.monotonic() < deadline:
        answered = {(a, seq) for a, s in streams.items() for seq in s.answers}
        if asked <= answered:
            return
        time.sleep(0.02)
