"""gpiozero adapter for a PIR motion sensor at a desk: the same debouncer as the radar.

A PIR says only "motion now", so presence is motion seen at least every
`evidence_gap` seconds during `arrive_delay`, and vacancy is `leave_delay`
seconds without motion. A PIR has no stream to fall silent, so it never
reports a silent sensor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace

from gpiozero import MotionSensor

from ruche.edge.presence import PresenceConfig, PresenceDebouncer, PresenceEvent

log = logging.getLogger(__name__)

TICK_S = 0.5


class PirReader:
    """One PIR on one GPIO pin; `on_event` gets the debouncer's changes and heartbeats."""

    def __init__(
        self,
        *,
        pin: int,
        desk: str,
        on_event: Callable[[PresenceEvent], None],
        config: PresenceConfig | None = None,
        pin_factory: object | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.desk = desk
        self._on_event = on_event
        self._clock = clock
        self._lock = threading.Lock()
        base = config or PresenceConfig()
        self._debouncer = PresenceDebouncer(replace(base, silent_after=None))
        self._sensor = MotionSensor(pin, pin_factory=pin_factory)
        self._sensor.when_motion = lambda: self._observe(detected=True)
        self._sensor.when_no_motion = lambda: self._observe(detected=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name=f"pir-{desk}", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sensor.close()

    def _observe(self, *, detected: bool) -> None:
        with self._lock:
            events = self._debouncer.observe_pir(self._clock(), detected=detected)
        self._emit(events)

    def _tick(self) -> None:
        while not self._stop.wait(TICK_S):
            with self._lock:
                # Motion held high keeps renewing the evidence between edges.
                events = self._debouncer.observe_pir(self._clock(), detected=self._sensor.value)
                events += self._debouncer.tick(self._clock())
            self._emit(events)

    def _emit(self, events: list[PresenceEvent]) -> None:
        for event in events:
            try:
                self._on_event(event)
            except Exception:
                log.exception("PIR at %s: handling %s failed", self.desk, event)
