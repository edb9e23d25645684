"""Refused messages are logged a few a window, the rest summarised with their counts."""

from __future__ import annotations

import logging
import time

import pytest

from ruche.refusals import RefusalLog


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Lines:
    """What the test's logger wrote, read when asked (pytest swaps its list per phase)."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def __len__(self) -> int:
        return len(self._caplog.records)

    def __getitem__(self, index):
        return self._caplog.records[index]

    def __iter__(self):
        return iter(self._caplog.records)


@pytest.fixture
def lines(caplog) -> Lines:
    caplog.set_level(logging.WARNING, logger="test.refusals")
    return Lines(caplog)


def refusals(clock: Clock, **kwargs: float) -> RefusalLog:
    return RefusalLog(logging.getLogger("test.refusals"), "event", clock=clock, **kwargs)  # type: ignore[arg-type]


class TestRefusalLog:
    def test_a_flood_writes_a_burst_and_one_summary(self, lines):
        clock = Clock()
        log = refusals(clock, burst=10, interval=10.0)
        for i in range(10_000):
            clock.now = i * 0.0002  # 10,000 in two seconds
            log.refused("bad_json" if i % 4 else "not_owner", "ruche/v1/s/a/status", "detail")
        log.flush()
        assert len(lines) == 11
        assert all("refused (" in r.getMessage() for r in lines[:10])
        summary = lines[-1]
        assert summary.suppressed == 9990  # type: ignore[attr-defined]
        assert summary.by_reason == {"bad_json": 7493, "not_owner": 2497}  # type: ignore[attr-defined]
        assert "9990 more events refused in 10 s" in summary.getMessage()
        assert "bad_json 7493, not_owner 2497" in summary.getMessage()

    def test_each_window_logs_its_own_burst(self, lines):
        clock = Clock()
        log = refusals(clock, burst=2, interval=10.0)
        for second in range(30):
            clock.now = float(second)
            log.refused("bad_json", "t", "d")
        log.flush()
        # Windows at 0, 10 and 20 s: two lines each, and a summary of the 8 others each.
        full = [r for r in lines if "refused (" in r.getMessage()]
        summaries = [r for r in lines if "not logged one by one" in r.getMessage()]
        assert len(full) == 6
        assert [s.suppressed for s in summaries] == [8, 8, 8]  # type: ignore[attr-defined]

    def test_quiet_after_a_flood_the_summary_still_comes(self, lines):
        log = RefusalLog(logging.getLogger("test.refusals"), "event", burst=1, interval=0.2)
        for _ in range(5):
            log.refused("bad_json", "t", "d")
        deadline = time.monotonic() + 5
        while len(lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(lines) == 2, "the window's end wrote the summary by itself"
        assert lines[1].suppressed == 4  # type: ignore[attr-defined]

    def test_nothing_suppressed_no_summary(self, lines):
        log = refusals(Clock(), burst=10)
        log.refused("bad_json", "t", "d")
        log.flush()
        assert len(lines) == 1
