"""Log refused messages without letting a flood write a line each.

Whoever holds an agent's credentials (or a broken agent) can send thousands of bad
messages a second; a warning line for each would fill the disk and drown the lines that
matter. Each window of `interval` seconds logs its first `burst` refusals in full and
counts the rest; when the window ends, one line says how many were not logged, by
reason. The counters behind `/metrics` count every refusal regardless.

    refusals = RefusalLog(log, "event")
    refusals.refused("bad_json", topic, detail)   # a line, or a count
    refusals.flush()                              # on stop: the pending summary now
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

BURST = 10
"""Refusals logged one by one per window."""
INTERVAL_S = 10.0


class RefusalLog:
    """Rate-limited warning lines for refused messages; thread-safe."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        burst: int = BURST,
        interval: float = INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`what` names the messages in the lines: "event", "tap", "door event"."""
        self._log = logger
        self._what = what
        self._burst = burst
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._window_start: float | None = None
        self._logged = 0
        self._suppressed: Counter[str] = Counter()
        self._timer: threading.Timer | None = None

    def refused(self, reason: str, topic: str, detail: str) -> None:
        """One refused message: logged in full, or counted for the window's summary."""
        with self._lock:
            now = self._clock()
            if self._window_start is None or now - self._window_start >= self._interval:
                self._summarise_locked()
                self._window_start, self._logged = now, 0
            if self._logged < self._burst:
                self._logged += 1
                full = True
            else:
                self._suppressed[reason] += 1
                full = False
                if self._timer is None:
                    delay = max(0.0, self._window_start + self._interval - now)
                    self._timer = threading.Timer(delay, self.flush)
                    self._timer.daemon = True
                    self._timer.start()
        if full:
            self._log.warning(
                "%s on %s refused (%s): %s", self._what, topic, reason, detail,
                extra={"reason": reason, "topic": topic},
            )  # fmt: skip

    def flush(self) -> None:
        """Log the summary of what the current window did not log, if anything."""
        with self._lock:
            self._summarise_locked()

    def _summarise_locked(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._suppressed:
            return
        total = sum(self._suppressed.values())
        by_reason = dict(sorted(self._suppressed.items()))
        self._suppressed.clear()
        self._window_start = None
        self._log.warning(
            "%d more %ss refused in %g s and not logged one by one: %s", total, self._what,
            self._interval, ", ".join(f"{r} {n}" for r, n in by_reason.items()),
            extra={"suppressed": total, "by_reason": by_reason},
        )  # fmt: skip
