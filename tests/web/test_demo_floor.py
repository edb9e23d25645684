"""The live floor page during `ruche demo`, in real headless Chromium (Debian's, through
Playwright): the demo's desks drawn, some occupied and some free; the screenshot is kept
in test-artifacts/demo-floor.png."""

from __future__ import annotations

import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser

from ruche.sim.services.sockets import free_port

pytestmark = pytest.mark.integration

DESKS = 40
SIGN_IN = r"sign in: .* as (\S+) \(manager\) or .*password \(shown once\): (\S+)"
"""The line the demo prints for people: the manager's e-mail and the password."""


class DemoProcess:
    """`ruche demo` in a process of its own; its stdout read line by line in a thread."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ruche", "demo", "--speed", "300", "--dir", str(workdir),
             "--port", str(free_port())],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, name="demo-stdout", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        """The first line (from now on) matching `pattern`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, "the demo ended:\n" + "\n".join(self.seen)
                continue
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        pytest.fail(f"the demo never printed {pattern!r}:\n" + "\n".join(self.seen))

    def close(self) -> None:
        self._reader.join(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()

    def stop(self) -> str:
        """Ctrl-C, and what it printed after."""
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(90)
        self._reader.join(10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return "\n".join(self.seen)


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoProcess]:
    running = DemoProcess(tmp_path / "demo")
    try:
        yield running
    finally:
        if running.proc.poll() is None:
            running.proc.kill()
            running.proc.wait()
        running.close()


def floor(base: str, key: str) -> dict[str, Any]:
    response = httpx.get(f"{base}/live/state", headers={"Authorization": f"Bearer {key}"})
    response.raise_for_status()
    site: dict[str, Any] = response.json()["sites"][0]
    return site


class TestDemoFloor:
    def test_the_floor_shows_occupied_and_free_desks(
        self, demo: DemoProcess, chromium: Browser, artifacts: Path
    ):
        base = demo.wait_for(r"live page: (http://127\.0\.0\.1:\d+)/")[1]
        signin = demo.wait_for(
            r"sign in: .* as (\S+) \(manager\) or .*password \(shown once\): (\S+)"
        )
        key = demo.wait_for(r"manager key \(shown once\): (ruche_\S+)")[1]
        demo.wait_for(r"^day: ")
        # The morning at 300x: members arrive from 08:00, most are in by 10:30.
        deadline = time.monotonic() + 60
        while floor(base, key)["headcount"] < 10:
            assert time.monotonic() < deadline, "ten members never sat down"
            time.sleep(0.5)

        context = chromium.new_context(viewport={"width": 1280, "height": 900})
        try:
            page = context.new_page()
            page.goto(base + "/")
            page.fill("#signin-email", signin[1])
            page.fill("#signin-password", signin[2])
            with page.expect_navigation():
                page.click("form[action='/signin'] button[type=submit]")
            site = '[data-site="demo"]'
            page.wait_for_selector(f'{site} [data-desk][data-state="occupied"]', timeout=10_000)
            page.wait_for_selector('#link[data-state="live"]', timeout=10_000)
            drawn = page.locator(f"{site} [data-desk]")
            occupied = page.locator(f'{site} [data-desk][data-state="occupied"]').count()
            free = page.locator(f'{site} [data-desk][data-state="free"]').count()
            assert drawn.count() == DESKS
            for zone in ("Open space", "Window row", "Quiet room"):
                assert page.is_visible(f'{site} [data-zone="{zone}"]'), zone
            assert occupied >= 10, f"{occupied} occupied desks drawn"
            assert free >= 1, f"{free} free desks drawn"
            headcount = page.text_content(f"{site} [data-headcount]") or ""
            assert re.fullmatch(r"\d+ présents?", headcount), headcount  # the manager reads French
            page.screenshot(path=str(artifacts / "demo-floor.png"), full_page=True)
            print(f"{occupied} occupied, {free} free, {headcount}")
        finally:
            context.close()

        out = demo.stop()
        assert demo.proc.returncode == 0, out
        assert "summary:" in out
        assert out.rstrip().endswith("bye")
