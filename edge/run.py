"""`ruche edge run`: build the agent from its config and run it until told to stop."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

from ruche.edge.agent import Agent
from ruche.edge.settings import AgentSettings, load_settings

log = logging.getLogger(__name__)


def pin_factory_for(settings: AgentSettings) -> object | None:
    """gpiozero's pin factory: the Pi's own by default, mock pins on a laptop."""
    if settings.gpio == "mock":
        from gpiozero.pins.mock import MockFactory  # noqa: PLC0415 - only off a Pi

        factory: object = MockFactory()
        return factory
    return None


def run_agent(config: Path, *, stop: threading.Event | None = None) -> int:
    """Run until SIGINT or SIGTERM (or `stop` is set); the outbox keeps what is unsent."""
    settings = load_settings(config)
    stop = stop or threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)
    agent = Agent(settings, pin_factory=pin_factory_for(settings))
    agent.start()
    try:
        stop.wait()
    finally:
        agent.stop()
    log.info("agent stopped; %d events wait in the outbox", agent.outbox.depth)
    return 0
