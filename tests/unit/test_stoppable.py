"""StoppableThread: the target runs until stop, which interrupts its wait and joins."""

from __future__ import annotations

import threading
import time

from ruche.stoppable import StoppableThread


def test_stop_interrupts_the_wait_and_lets_the_target_finish() -> None:
    rounds: list[str] = []

    def target(stopping: threading.Event) -> None:
        while not stopping.wait(60):  # only a stop ends this wait
            rounds.append("round")
        rounds.append("last word")

    thread = StoppableThread(target, name="t")
    thread.start()
    assert thread.running
    started = time.monotonic()
    thread.stop()
    assert time.monotonic() - started < 5
    assert rounds == ["last word"]
    assert not thread.running


def test_restart_after_stop_and_stop_without_start() -> None:
    runs: list[int] = []

    def target(stopping: threading.Event) -> None:
        runs.append(1)
        stopping.wait(60)

    thread = StoppableThread(target, name="t")
    thread.stop()  # never started: nothing to join
    for _ in range(2):
        thread.start()
        thread.stop()
    assert runs == [1, 1]
