"""Polling until something holds, with the last value in the failure.

>>> eventually(lambda: 42, what="the answer")
42
>>> wait_until(lambda: False, timeout=0.05, what="never")
Traceback (most recent call last):
...
AssertionError: never: not in 0.05 s
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(
    check: Callable[[], T], *, timeout: float = 20.0, what: str = "", every: float = 0.05
) -> T:
    """Call `check` until it returns something truthy, and return that; AssertionError
    naming `what` and the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        last = check()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or check}: not in {timeout:g} s; last: {last!r}")
        time.sleep(every)


def wait_until(
    predicate: Callable[[], bool], *, timeout: float = 5.0, what: str = "", every: float = 0.01
) -> float:
    """Wait for `predicate`; return the seconds it took; AssertionError after `timeout`."""
    started = time.monotonic()
    deadline = started + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what or predicate}: not in {timeout:g} s")
        time.sleep(every)
    return time.monotonic() - started
