"""`ruche demo`: Ruche running on one machine, as far as it is built.

Today: a Mosquitto broker on Ruche's generated configuration, one agent
(`ruche edge run`) with two simulated LD2410 desk radars on ptys and a door whose
NFC reader sees a badge every few seconds over nfcpy's UDP driver, and the
stand-in server that stores and acks its events. It prints how to watch the
traffic, a progress line, and a summary; it stops cleanly on Ctrl-C, SIGTERM or
after `--duration`.
"""

from __future__ import annotations

import shlex
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from types import FrameType

from ruche import __version__
from ruche.broker import everything
from ruche.broker.mosquitto import MosquittoError
from ruche.sim.harness import AGENT, SITE, AgentHarness

FOREVER_S = 7 * 24 * 3600.0
PROGRESS_EVERY_S = 5.0


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - the demo talks to the person running it


def run_demo(*, duration: float | None, directory: Path | None, port: int | None) -> int:
    """Run until Ctrl-C, SIGTERM or `duration` seconds; return the exit status."""
    # Handlers first: a Ctrl-C while things start must still stop everything cleanly.
    stop = threading.Event()

    def _on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(stop, duration=duration, directory=directory, port=port)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _run(
    stop: threading.Event, *, duration: float | None, directory: Path | None, port: int | None
) -> int:
    with tempfile.TemporaryDirectory(prefix="ruche-demo-") as tmp:
        workdir = (directory or Path(tmp)).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        harness = AgentHarness(workdir, radars=2, seconds=duration or FOREVER_S, port=port)
        try:
            harness.start()
        except MosquittoError as exc:
            print(f"ruche demo: {exc}", file=sys.stderr)  # noqa: T201
            harness.stop()
            return 1
        try:
            if not stop.is_set():
                harness.start_agent()
                _serve(harness, duration, stop)
            return 0
        finally:
            harness.stop()
            _say("stopped the agent, the simulated hardware and the broker; bye")


def _serve(harness: AgentHarness, duration: float | None, stop: threading.Event) -> None:
    broker, server = harness.broker, harness.accounts.server
    watch = shlex.join(
        [
            "mosquitto_sub", "-V", "mqttv5", "-h", broker.host, "-p", str(broker.port),
            "-u", server.username, "-P", server.password.get_secret_value(),
            "-t", everything(), "-v",
        ]
    )  # fmt: skip
    _say(f"ruche {__version__} demo")
    _say(f"broker: Mosquitto on {broker.host}:{broker.port}, config in {broker.files.directory}")
    _say(f"agent:  {SITE}/{AGENT}, 2 desks (LD2410 radars on ptys), door 'front' "
         f"(NFC reader {harness.reader}); log in {harness.workdir / 'agent.log'}")  # fmt: skip
    _say("server: the stand-in receiver, which stores events and acks them")
    _say(f"watch the traffic:\n  {watch}")
    _say("stop with Ctrl-C" + (f" (or wait {duration:g} s)" if duration else ""))
    started = time.monotonic()
    deadline = None if duration is None else started + duration
    while not stop.is_set():
        remaining = PROGRESS_EVERY_S if deadline is None else deadline - time.monotonic()
        if remaining <= 0 or stop.wait(min(PROGRESS_EVERY_S, remaining)):
            break
        _say(f"{time.monotonic() - started:6.0f} s  {_counts(harness)}")
    _say(f"summary after {time.monotonic() - started:.0f} s: {_counts(harness)}")


def _counts(harness: AgentHarness) -> str:
    kinds = Counter(
        getattr(e.payload, "kind", e.topic.channel.value) for e in harness.receiver.snapshot()
    )
    produced, acked = harness.outbox()
    parts = ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
    return (
        f"{sum(kinds.values())} events stored ({parts or 'none yet'}); "
        f"{harness.taps} badge taps; {produced - acked} waiting in the agent's outbox"
    )
