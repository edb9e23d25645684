"""A PIR desk sensor through gpiozero's own mock pins."""

from __future__ import annotations

import queue
import time

import pytest
from gpiozero.pins.mock import MockFactory

from ruche.broker import PresenceState
from ruche.edge.pir import PirReader
from ruche.edge.presence import PresenceConfig, PresenceUpdate

pytestmark = pytest.mark.integration


class TestPirReader:
    """Motion held for the arrive delay means occupied; none for the leave delay, vacant."""

    def test_occupied_then_vacant(self):
        factory = MockFactory()
        events: queue.Queue[object] = queue.Queue()
        pir = PirReader(pin=5, desk="desk-9", on_event=events.put, pin_factory=factory,
                        config=PresenceConfig(arrive_delay=0.6, leave_delay=1.0))  # fmt: skip
        try:
            pin = factory.pin(5)
            started = time.monotonic()
            pin.drive_high()
            occupied = events.get(timeout=5)
            assert isinstance(occupied, PresenceUpdate)
            assert occupied.state is PresenceState.OCCUPIED
            assert time.monotonic() - started >= 0.5
            pin.drive_low()
            left = time.monotonic()
            vacant = events.get(timeout=5)
            assert isinstance(vacant, PresenceUpdate)
            assert vacant.state is PresenceState.VACANT
            assert time.monotonic() - left >= 0.9
        finally:
            pir.close()
            factory.close()

    def test_a_single_twitch_is_not_presence(self):
        factory = MockFactory()
        events: queue.Queue[object] = queue.Queue()
        pir = PirReader(pin=6, desk="desk-9", on_event=events.put, pin_factory=factory,
                        config=PresenceConfig(arrive_delay=2.0, leave_delay=1.0,
                                              evidence_gap=0.5))  # fmt: skip
        try:
            pin = factory.pin(6)
            pin.drive_high()
            time.sleep(0.1)
            pin.drive_low()
            time.sleep(2.5)
            states = []
            while not events.empty():
                event = events.get()
                if isinstance(event, PresenceUpdate):
                    states.append(event.state)
            assert PresenceState.OCCUPIED not in states
        finally:
            pir.close()
            factory.close()
