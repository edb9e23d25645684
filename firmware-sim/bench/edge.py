"""`ruche bench edge`: what the agent costs a Raspberry Pi.

Runs `ruche edge run` as its own process with `radars` LD2410 radars reporting at
10 Hz over ptys and one NFC reader on nfcpy's UDP driver (a badge tapped every
five seconds), against a real Mosquitto and the stand-in server, and reads the
agent's CPU time and resident memory from /proc. The budget for a Pi: under
60 MB RSS and under 5 % of one core (on this machine).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ruche.sim.harness import AgentHarness, sample_process

WARMUP_S = 5.0


@dataclass(frozen=True)
class AgentBenchResult:
    seconds: float
    radars: int
    frames_per_s: float
    cpu_percent: float
    rss_mb: float
    peak_rss_mb: float
    events: int
    taps: int
    lost: int

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def run_agent_bench(*, seconds: float = 60.0, radars: int = 4) -> AgentBenchResult:
    """Measure one agent for `seconds` after a short warm-up."""
    with (
        tempfile.TemporaryDirectory(prefix="ruche-bench-edge-") as tmp,
        AgentHarness(Path(tmp), radars=radars, seconds=seconds + 30, tap_every=5.0) as rig,
    ):
        agent = rig.start_agent()
        time.sleep(WARMUP_S)
        frames_before = sum(r.stats.frames for r in rig.radars)
        first = sample_process(agent.pid)
        started = time.monotonic()
        time.sleep(seconds)
        last = sample_process(agent.pid)
        elapsed = time.monotonic() - started
        frames = sum(r.stats.frames for r in rig.radars) - frames_before
        rig.stop_tapping()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            produced, acked = rig.outbox()
            if produced == acked:
                break
            time.sleep(0.2)
        produced, _ = rig.outbox()
        received = len(rig.receiver.snapshot())
        return AgentBenchResult(
            seconds=round(elapsed, 1),
            radars=radars,
            frames_per_s=round(frames / elapsed, 1),
            cpu_percent=round(100 * (last.cpu_s - first.cpu_s) / elapsed, 2),
            rss_mb=round(last.rss_mb, 1),
            peak_rss_mb=round(last.peak_rss_mb, 1),
            events=produced,
            taps=rig.taps,
            lost=produced - received,
        )
