"""nfcpy adapter for one door reader: one `on_tap` per badge presentation.

The same code runs on a Pi and on a laptop; only the nfcpy device string differs:
`usb` (or `usb:054c:06c3`), `tty:AMA0:pn532`, or `udp:127.0.0.1:54321`, where a
`ruche.sim.nfc.BadgeEmulator` plays the badges.

```python
def on_tap(uid: bytes, reader_id: str) -> None:
    taps.put((uid, reader_id))  # return quickly: the reader waits for you

with NfcReader(device="udp:127.0.0.1:54321", reader_id="front", on_tap=on_tap) as reader:
    ...  # reader.stats: taps, reader errors, reopens, callback errors
```

Callback contract: `on_tap(uid, reader_id)` is called on the reader's own thread, once
per presentation (a badge held on the reader is one tap until it is removed; the same
badge seen again within `rearm_s` of leaving is the same presentation), with no lock
held. While it runs the reader does not look at the field, so hand the tap to a queue
or the outbox and return. An exception from it is logged and counted, never fatal.

Errors: a device that cannot be opened when the reader is built raises `NfcError`
naming the device string. Later failures (a reader unplugged, a serial line gone) are
logged, counted and retried: the frontend is closed and reopened with backoff.

Timing over `udp:`: nfcpy's UDP driver waits 1 s for an answer to each sense
request, so a badge is seen within about 1 s of arriving, and `close()` can take
about as long. That is why `udp:` readers look only for Type 3 (212F) targets, the
only tag type nfcpy can emulate; real readers look for nfcpy's defaults (106A, 106B,
212F).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Self

import nfc

__all__ = [
    "BadgeField",
    "NfcError",
    "NfcReader",
    "ReaderStats",
    "TapCallback",
    "badge_gone",
    "badge_seen",
    "check_device",
    "default_targets",
    "next_backoff",
]

logger = logging.getLogger(__name__)

TapCallback = Callable[[bytes, str], None]
"""`on_tap(uid, reader_id)`: the badge's identifier as the reader saw it, and which reader."""

HARDWARE_TARGETS = ("106A", "106B", "212F")
"""What nfcpy looks for by default: ISO 14443-A (MIFARE, NTAG), -B, and FeliCa."""
UDP_TARGETS = ("212F",)
"""What a `udp:` reader looks for: nfcpy emulates Type 3 (FeliCa) tags only."""
_DRIVERS = ("usb", "tty", "com", "udp")


class NfcError(RuntimeError):
    """An NFC reader could not be opened; the message names the device and what to do."""


# --- pure core ---------------------------------------------------------------------


def check_device(device: str) -> str:
    """`device` if it is an nfcpy device string (`usb...`, `tty:...`, `com:...`, `udp...`).

    Raises ValueError naming the string otherwise.
    """
    driver = device.split(":", 1)[0]
    if driver not in _DRIVERS:
        raise ValueError(
            f"{device!r} is not an nfcpy device string: use usb[:vendor[:product]], "
            "tty:<port>:<driver> (e.g. tty:AMA0:pn532), com:<port>:<driver> or udp:<host>:<port>"
        )
    return device


def default_targets(device: str) -> tuple[str, ...]:
    """The technologies a reader on `device` senses when none are configured."""
    return UDP_TARGETS if check_device(device).startswith("udp") else HARDWARE_TARGETS


@dataclass(frozen=True, slots=True)
class BadgeField:
    """What a reader knows of its field: the badge on it, and the one that just left."""

    held: bytes | None = None
    """The badge on the reader now, if any."""
    left: bytes | None = None
    """The badge that left most recently, while it may still come back as the same tap."""
    left_at: float = 0.0
    """When `left` left (monotonic seconds)."""


def badge_seen(
    field: BadgeField, uid: bytes, now: float, *, rearm_s: float
) -> tuple[BadgeField, bool]:
    """The field once `uid` is seen at `now`, and whether that is a new tap.

    A badge already held is not a new tap; neither is the badge that left less than
    `rearm_s` ago (the reader lost it for a moment: a badge at the edge of the field).
    """
    if field.held == uid:
        return field, False
    returned = field.held is None and field.left == uid and now - field.left_at < rearm_s
    return BadgeField(held=uid), not returned


def badge_gone(field: BadgeField, now: float) -> BadgeField:
    """The field once the held badge is no longer there at `now`."""
    if field.held is None:
        return field
    return BadgeField(left=field.held, left_at=now)


def next_backoff(previous: float, *, first: float, cap: float) -> float:
    """Seconds to wait before the next reopen: `first`, then doubling up to `cap`."""
    if previous <= 0:
        return min(first, cap)
    return min(previous * 2, cap)


@dataclass(frozen=True, slots=True)
class ReaderStats:
    """What a reader has counted since it was built."""

    taps: int = 0
    """Presentations reported to `on_tap`."""
    errors: int = 0
    """Reader failures: frontend errors and failed reopens."""
    reopens: int = 0
    """Times the frontend was opened again after a failure."""
    callback_errors: int = 0
    """Exceptions raised by `on_tap`."""


# --- the adapter -------------------------------------------------------------------


class NfcReader:
    """One nfcpy ContactlessFrontend read on its own thread; close it when done."""

    def __init__(
        self,
        *,
        device: str,
        reader_id: str,
        on_tap: TapCallback,
        targets: Sequence[str] | None = None,
        rearm_s: float = 0.5,
        poll_pause_s: float = 0.05,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Open `device` and start reading.

        `device` is an nfcpy device string; `reader_id` is passed back with every tap.
        `targets` are nfcpy bitrate/technology strings to sense (default:
        `default_targets(device)`). `rearm_s` is how long a badge must be gone before it
        counts as a new tap. `poll_pause_s` is the pause between sense rounds (a real
        reader would otherwise keep its field on without a break). `backoff_s` and
        `max_backoff_s` bound the wait between reopens after a failure.

        Raises NfcError, naming `device`, when it cannot be opened.
        """
        try:
            self.device = check_device(device)
        except ValueError as exc:
            raise NfcError(str(exc)) from exc
        self.reader_id = reader_id
        self._on_tap = on_tap
        self._targets = list(targets if targets is not None else default_targets(device))
        self._rearm_s = rearm_s
        self._poll_pause_s = poll_pause_s
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._clock = clock
        self._field = BadgeField()  # only the reader thread touches it
        self._stats = ReaderStats()
        self._stats_lock = threading.Lock()  # guards _stats; never held across calls out
        self._stop = threading.Event()
        self._clf: Any = self._open()
        self._thread = threading.Thread(
            target=self._run, name=f"nfc-reader-{reader_id}", daemon=True
        )
        self._thread.start()

    @property
    def stats(self) -> ReaderStats:
        """A snapshot of the counters."""
        with self._stats_lock:
            return self._stats

    def close(self, timeout: float = 5.0) -> None:
        """Stop reading and close the frontend. Idempotent.

        Waits up to `timeout` s for the thread: over `udp:` a sense round in progress
        takes up to about 1 s to finish.
        """
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning(
                    "NFC reader %s on %r did not stop within %.1f s",
                    self.reader_id,
                    self.device,
                    timeout,
                )

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

    def _open(self) -> Any:  # noqa: ANN401 - nfcpy is untyped: a ContactlessFrontend
        """A ContactlessFrontend on the device, or NfcError saying why not."""
        clf = nfc.ContactlessFrontend()
        try:
            opened = clf.open(self.device)
        except OSError as exc:  # nfcpy raises for a busy, forbidden or unresolvable device
            clf.close()
            raise NfcError(
                f"cannot open NFC reader {self.device!r}: {exc} "
                "(is libusb installed, the reader plugged in, and its device node readable?)"
            ) from exc
        if not opened:
            clf.close()
            raise NfcError(
                f"no NFC reader found at {self.device!r}: check that it is plugged in and "
                "that the device string names it (usb, usb:<vendor>:<product>, "
                "tty:<port>:<driver>, udp:<host>:<port>)"
            )
        logger.info("NFC reader %s opened on %r", self.reader_id, self.device)
        return clf

    def _count(self, **increments: int) -> None:
        with self._stats_lock:
            current = self._stats
            self._stats = replace(
                current, **{k: getattr(current, k) + v for k, v in increments.items()}
            )

    def _run(self) -> None:
        backoff = 0.0
        try:
            while not self._stop.is_set():
                if self._clf is None:
                    backoff = next_backoff(backoff, first=self._backoff_s, cap=self._max_backoff_s)
                    if self._stop.wait(backoff):
                        break
                    try:
                        self._clf = self._open()
                    except NfcError as exc:
                        self._count(errors=1)
                        logger.warning("%s; retrying", exc)
                        continue
                    self._count(reopens=1)
                if self._read_once():
                    backoff = 0.0
                else:
                    self._count(errors=1)
                    self._forget_badge()
                    self._clf.close()
                    self._clf = None
        finally:
            if self._clf is not None:
                self._clf.close()
                self._clf = None

    def _read_once(self) -> bool:
        """One nfcpy connect: until a badge has come and gone, or we stop. False on failure."""
        options = {
            "targets": self._targets,
            "iterations": 1,
            "on-connect": self._connected,
            "on-release": self._released,
            "beep-on-connect": True,
        }
        try:
            result = self._clf.connect(rdwr=options, terminate=self._paused_stop)
        except Exception:  # any driver failure means: close, back off, reopen
            logger.exception("NFC reader %s on %r failed", self.reader_id, self.device)
            return False
        if result is False:  # nfcpy already logged the IOError it swallowed
            logger.warning(
                "NFC reader %s on %r lost the device; reopening", self.reader_id, self.device
            )
            return False
        return True

    def _paused_stop(self) -> bool:
        """nfcpy's `terminate` hook, asked between sense rounds: pause, then say whether
        to stop."""
        return self._stop.wait(self._poll_pause_s)

    def _connected(self, tag: Any) -> bool:  # noqa: ANN401 - an nfcpy Tag
        uid = bytes(tag.identifier)
        self._field, is_tap = badge_seen(self._field, uid, self._clock(), rearm_s=self._rearm_s)
        if is_tap:
            self._count(taps=1)
            logger.info("badge tapped reader=%s uid=%s", self.reader_id, uid.hex())
            try:
                self._on_tap(uid, self.reader_id)
            except Exception:  # a broken callback must not stop the door
                self._count(callback_errors=1)
                logger.exception("on_tap failed for reader %s", self.reader_id)
        return True  # let nfcpy check presence until the badge leaves

    def _released(self, _tag: Any) -> bool:  # noqa: ANN401 - an nfcpy Tag
        self._forget_badge()
        return True

    def _forget_badge(self) -> None:
        self._field = badge_gone(self._field, self._clock())
