"""pyserial adapter for one LD2410 desk radar: presence changes, heartbeats and faults out.

```python
def on_event(event: PresenceEvent) -> None:
    events.put(event)  # return quickly: the reader waits for you

with RadarReader(port="/dev/ttyUSB0", desk="desk-12", on_event=on_event) as radar:
    ...  # radar.stats: frames, malformed by reason, garbage bytes, reopens, ...
```

The serial bytes go through `ruche.edge.ld2410.FrameParser` and the reports through
`ruche.edge.presence.PresenceDebouncer`; only what the debouncer returns reaches
`on_event` (`PresenceUpdate`, `SensorSilent`, `SensorResumed`), never raw frames.

Callback contract: `on_event` is called on the reader's own thread, with no lock held.
While it runs no byte is read, so hand the event to a queue or the outbox and return.
An exception from it is logged and counted, never fatal.

Errors: nothing is raised after construction. A port that cannot be opened (cable
pulled, wrong path, permissions) or that fails while reading is logged, counted, closed
and reopened with backoff, forever; meanwhile the debouncer is still ticked, so a radar
gone for `silent_after` seconds is reported as `SensorSilent`. Garbage on the line is
counted by the parser and skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Self

import serial

from ruche.edge.ld2410 import BAUD_RATE, FrameParser, ParserStats
from ruche.edge.presence import PresenceConfig, PresenceDebouncer, PresenceEvent

__all__ = ["EventCallback", "RadarReader", "RadarStats"]

logger = logging.getLogger(__name__)

EventCallback = Callable[[PresenceEvent], None]


@dataclass(frozen=True, slots=True)
class RadarStats:
    """What a radar reader has counted since it was built."""

    parser: ParserStats = field(default_factory=ParserStats)
    """Frames decoded, malformed frames by reason, garbage bytes."""
    opens: int = 0
    """Times the port was opened (the first time included)."""
    open_failures: int = 0
    """Attempts to open the port that failed."""
    disconnects: int = 0
    """Times an open port failed while reading (cable pulled, device gone)."""
    callback_errors: int = 0
    """Exceptions raised by `on_event`."""
    connected: bool = False
    """The port is open now."""


class RadarReader:
    """One LD2410 on a serial port, read on its own thread; close it when done."""

    def __init__(
        self,
        *,
        port: str,
        on_event: EventCallback,
        desk: str = "",
        config: PresenceConfig | None = None,
        baudrate: int = BAUD_RATE,
        read_timeout_s: float = 0.1,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Start reading `port` (e.g. `/dev/ttyUSB0`) at `baudrate`.

        `desk` only names the reader in logs. `config` sets the debouncer's delays.
        `read_timeout_s` bounds how long a read waits, hence how often silences and
        heartbeats are checked and how fast `close()` returns. `backoff_s` and
        `max_backoff_s` bound the wait between reopens after a failure. `clock` is the
        monotonic clock the debouncer is fed with.
        """
        self.port = port
        self.desk = desk or port
        self.baudrate = baudrate
        self._on_event = on_event
        self._read_timeout_s = read_timeout_s
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._parser = FrameParser()  # only the reader thread feeds it
        self._debouncer = PresenceDebouncer(config)
        self._serial: serial.Serial | None = None
        self._stats = RadarStats()
        self._lock = threading.Lock()  # guards _stats and parser snapshots
        self._stop = threading.Event()
        self._debouncer.tick(clock())  # silence is measured from now
        self._thread = threading.Thread(target=self._run, name=f"radar-{self.desk}", daemon=True)
        self._thread.start()

    @property
    def stats(self) -> RadarStats:
        """A snapshot of the counters."""
        with self._lock:
            return replace(self._stats, parser=self._parser.stats)

    def close(self, timeout: float = 5.0) -> None:
        """Stop reading and close the port. Idempotent."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("radar %s did not stop within %.1f s", self.desk, timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- internals ------------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.0
        try:
            while not self._stop.is_set():
                if self._serial is None:
                    if backoff and self._pause(backoff):
                        break
                    if self._open():
                        backoff = 0.0
                    else:
                        backoff = min(max(backoff * 2, self._backoff_s), self._max_backoff_s)
                    continue
                self._read_once(self._serial)
        finally:
            self._close_port()

    def _open(self) -> bool:
        try:
            port = serial.Serial(self.port, self.baudrate, timeout=self._read_timeout_s)
        except (OSError, ValueError) as exc:  # SerialException is an OSError
            with self._lock:
                failures = self._stats.open_failures + 1
                self._stats = replace(self._stats, open_failures=failures)
            log = logger.warning if failures == 1 or failures % 10 == 0 else logger.debug
            log("radar %s: cannot open %s (%s); retrying, failure %d", self.desk, self.port, exc,
                failures)  # fmt: skip
            return False
        with self._lock:
            self._stats = replace(self._stats, opens=self._stats.opens + 1, connected=True)
        logger.info("radar %s: opened %s at %d baud", self.desk, self.port, self.baudrate)
        self._serial = port
        return True

    def _read_once(self, port: serial.Serial) -> None:
        try:
            data = port.read(max(1, port.in_waiting))
        except (OSError, ValueError) as exc:  # SerialException, or a port closed under us
            with self._lock:
                disconnects = self._stats.disconnects + 1
                self._stats = replace(self._stats, disconnects=disconnects, connected=False)
            logger.warning("radar %s: lost %s (%s); reopening", self.desk, self.port, exc)
            self._close_port()
            return
        now = self._clock()
        events: list[PresenceEvent] = []
        if data:
            with self._lock:
                reports = self._parser.feed(data)
            for report in reports:
                events += self._debouncer.observe(now, report)
        events += self._debouncer.tick(now)
        self._emit(events)

    def _pause(self, seconds: float) -> bool:
        """Wait `seconds` while ticking the debouncer; True when asked to stop."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(remaining, self._read_timeout_s)):
                return True
            self._emit(self._debouncer.tick(self._clock()))
        return self._stop.is_set()

    def _emit(self, events: list[PresenceEvent]) -> None:
        for event in events:
            logger.info("radar %s: %s", self.desk, event)
            try:
                self._on_event(event)
            except Exception:
                with self._lock:
                    errors = self._stats.callback_errors + 1
                    self._stats = replace(self._stats, callback_errors=errors)
                logger.exception("radar %s: on_event failed", self.desk)

    def _close_port(self) -> None:
        port, self._serial = self._serial, None
        if port is not None:
            try:
                port.close()
            except OSError as exc:
                logger.debug("radar %s: closing %s: %s", self.desk, self.port, exc)
        with self._lock:
            self._stats = replace(self._stats, connected=False)
