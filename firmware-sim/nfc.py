"""A badge emulator on nfcpy's UDP driver: the card side of a simulated door reader.

A reader built on `nfc.ContactlessFrontend("udp:127.0.0.1:54321")` (the agent's
`ruche.edge.nfc.NfcReader`) finds this emulator's badge exactly as it would find a
card on a USB reader.

```python
with BadgeEmulator(device="udp:127.0.0.1:54321") as badge:
    badge.tap(bytes.fromhex("0123456789abcdef"), hold_s=1.5)  # present, hold, remove
    badge.present(bytes.fromhex("0123456789abcdef"))         # lay it on the reader ...
    badge.remove()                                          # ... and take it away
```

How the UDP driver pairs two frontends: both open the same `udp:host:port`. The card
side binds `0.0.0.0:port` while it listens; the reader side sends from an ephemeral
port to `host:port` and gets its answers back there. So only one emulator can listen
on a port, and an emulator must be reachable at the host the reader names.

Badge identifiers: nfcpy can emulate only Type 3 (FeliCa) tags (`nfc.tag.emulate`
knows no other type; the UDP driver answers Type A and B anticollision, but nothing
would answer the tag commands). A FeliCa card's identifier is its 8-byte IDm, and a
reader reports `tag.identifier == IDm`. The emulator presents a badge UID as the IDm
verbatim, so a simulated badge UID must be exactly 8 bytes and must not start with
01 FE (that prefix marks an NFC-DEP phone, which readers skip). 4- and 7-byte MIFARE
UIDs are refused rather than padded: a padded UID is not what the reader would
report, and the allow-list must hold what the reader reports. See `felica_sensf_res`.

Timing: nfcpy listens in rounds of at least 0.5 s (its UDP driver waits that long for
a datagram), and within a round it keeps answering. `remove()` therefore takes up to
about 0.75 s and returns once the badge no longer answers.
"""

from __future__ import annotations

import errno
import logging
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import nfc
import nfc.clf
import nfc.tag

__all__ = [
    "FELICA_IDM_LENGTH",
    "BadgeEmulator",
    "BadgeEmulatorError",
    "felica_sensf_res",
]

logger = logging.getLogger(__name__)

FELICA_IDM_LENGTH = 8
"""Bytes in a FeliCa IDm, hence in a simulated badge UID."""
NFC_DEP_PREFIX = b"\x01\xfe"
"""An IDm starting with this announces NFC-DEP (a phone); nfcpy readers skip it."""
DEFAULT_PMM = bytes.fromhex("00ff000000000000")
"""PMm with IC code FF: no Sony product nfcpy would probe further; a plain Type 3 Tag."""
DEFAULT_SYSTEM_CODE = 0x12FC
"""The NFC Forum Type 3 Tag system code."""
_BITRATE = "212F"
_SERVE_IDLE_S = 0.5  # a reader silent this long while we serve it has gone


class BadgeEmulatorError(RuntimeError):
    """The emulator could not start or did not follow a cue; the message says why."""


def felica_sensf_res(
    uid: bytes, *, pmm: bytes = DEFAULT_PMM, system_code: int = DEFAULT_SYSTEM_CODE
) -> bytes:
    """The SENSF_RES a FeliCa card with IDm `uid` answers polling with (19 bytes).

    Response code 01, IDm (the badge UID, verbatim), PMm, system code. Raises
    ValueError when `uid` cannot be an IDm: not exactly 8 bytes, or starting 01 FE.
    """
    if len(uid) != FELICA_IDM_LENGTH:
        raise ValueError(
            f"badge UID {uid.hex()} has {len(uid)} bytes; the emulated badge is a FeliCa "
            f"card whose identifier (IDm) is exactly {FELICA_IDM_LENGTH} bytes and which "
            "the reader reports verbatim: give the simulated badge an 8-byte UID"
        )
    if uid.startswith(NFC_DEP_PREFIX):
        raise ValueError(
            f"badge UID {uid.hex()} starts with 01fe, which marks an NFC-DEP phone "
            "that readers skip: choose another UID"
        )
    if len(pmm) != 8:
        raise ValueError(f"PMm must be 8 bytes, got {len(pmm)}")
    return b"\x01" + uid + pmm + system_code.to_bytes(2, "big")


class BadgeEmulator:
    """One badge (at a time) on an nfcpy frontend in card emulation; close it when done."""

    def __init__(self, *, device: str, listen_s: float = 0.25) -> None:
        """Open `device` (`udp:host:port`) and start the emulator thread, no badge on it.

        `listen_s` is the length of one nfcpy listen round; cues take effect between
        rounds (and nfcpy makes each round at least 0.5 s when no reader talks).

        Raises BadgeEmulatorError when the device cannot be opened or its UDP port is
        taken (another emulator on the same reader).
        """
        self.device = device
        self._listen_s = listen_s
        self._cond = threading.Condition()
        self._uid: bytes | None = None  # the badge that should be on the reader
        self._answering: bytes | None = None  # the badge the thread answers as
        self._closed = False
        _check_port_free(device)
        self._clf: Any = nfc.ContactlessFrontend()
        try:
            opened = self._clf.open(device)
        except OSError as exc:
            raise BadgeEmulatorError(
                f"cannot open {device!r} for the badge emulator: {exc}"
            ) from exc
        if not opened:
            raise BadgeEmulatorError(
                f"no nfcpy device at {device!r}: the badge emulator wants udp:<host>:<port>"
            )
        self._thread = threading.Thread(target=self._run, name=f"badge-{device}", daemon=True)
        self._thread.start()

    @property
    def presented(self) -> bytes | None:
        """The badge on the reader now (as cued), if any."""
        with self._cond:
            return self._uid

    def present(self, uid: bytes) -> None:
        """Lay badge `uid` on the reader (replacing any other); it stays until `remove()`.

        Raises ValueError when `uid` is not a valid 8-byte FeliCa IDm.
        """
        felica_sensf_res(uid)  # refuse a bad UID here, not on the thread
        with self._cond:
            self._check_open()
            self._uid = uid
            self._cond.notify_all()

    def remove(self, *, timeout: float = 3.0) -> None:
        """Take the badge away; returns once the emulator no longer answers for it."""
        with self._cond:
            self._check_open()
            self._uid = None
            self._cond.notify_all()
            if not self._cond.wait_for(lambda: self._answering is None, timeout):
                raise BadgeEmulatorError(
                    f"badge on {self.device!r} still answering after {timeout} s"
                )

    def tap(self, uid: bytes, hold_s: float = 1.5) -> None:
        """Present `uid` for `hold_s` seconds, then remove it (blocks meanwhile).

        A reader on nfcpy's UDP driver senses about once a second (its driver waits
        1 s for each answer), so a badge held for less than that may go unseen, as on a
        slow reader: keep `hold_s` above about 1.1 s when the tap must be seen.
        """
        self.present(uid)
        time.sleep(hold_s)
        self.remove()

    def close(self) -> None:
        """Stop the thread and close the frontend. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._uid = None
            self._cond.notify_all()
        self._thread.join()
        self._clf.close()

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

    def _check_open(self) -> None:
        if self._closed:
            raise BadgeEmulatorError(f"the badge emulator on {self.device!r} is closed")

    def _wanted(self) -> bytes | None:
        """Wait for a badge to present (or for close); mark the thread silent meanwhile."""
        with self._cond:
            while self._uid is None and not self._closed:
                self._answering = None
                self._cond.notify_all()
                self._cond.wait()
            self._answering = self._uid
            self._cond.notify_all()
            return self._uid

    def _still(self, uid: bytes) -> bool:
        with self._cond:
            return self._uid == uid

    def _run(self) -> None:
        while (uid := self._wanted()) is not None:
            target = nfc.clf.LocalTarget(_BITRATE)
            target.sensf_res = bytearray(felica_sensf_res(uid))
            started = time.monotonic()
            try:
                # Within this call nfcpy answers polling as the card; it returns a
                # target only when a reader sends a command addressed to the card.
                activated = self._clf.listen(target, self._listen_s)
            except (OSError, nfc.clf.Error):
                logger.exception("badge emulator on %r failed to listen", self.device)
                activated = None
            if activated is not None and activated.tt3_cmd:
                self._serve(uid, activated)
            elif time.monotonic() - started < self._listen_s / 2:
                # nfcpy gave up at once (its bind failed): do not spin.
                logger.warning("badge emulator on %r could not listen; retrying", self.device)
                time.sleep(self._listen_s)
        with self._cond:
            self._answering = None
            self._cond.notify_all()

    def _serve(self, uid: bytes, activated: Any) -> None:  # noqa: ANN401 - an nfcpy LocalTarget
        """Answer a reader's Type 3 commands with nfcpy's tag emulation while `uid` stays."""
        tag = nfc.tag.emulate(self._clf, activated)
        if tag is None:
            return
        response = tag.process_command(tag.cmd)
        last_heard = time.monotonic()
        while self._still(uid) and time.monotonic() - last_heard < _SERVE_IDLE_S:
            try:
                command = tag.send_response(response, 0.1)
            except nfc.clf.BrokenLinkError:  # the reader switched its field off
                return
            except nfc.clf.CommunicationError:
                response = None
                continue
            last_heard = time.monotonic()
            response = tag.process_command(command) if command else None


def _check_port_free(device: str) -> None:
    """Fail early, naming the port, when another emulator already listens on it.

    nfcpy's UDP driver would just never answer: its listen gives up silently on
    EADDRINUSE.
    """
    parts = device.split(":")
    if parts[0] != "udp" or len(parts) < 3 or not parts[2]:
        return
    port = int(parts[2])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("0.0.0.0", port))  # noqa: S104 - where nfcpy's UDP driver binds
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise BadgeEmulatorError(
                    f"UDP port {port} of {device!r} is taken: another badge emulator "
                    "(or program) listens there; one emulator per reader port"
                ) from exc
            raise
