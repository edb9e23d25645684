"""`ruche demo --broker embedded`: the demo's day through the embedded Python broker
instead of Mosquitto, as a person without Mosquitto would run it, and its summary checked
against what the demo's SQLite holds and what the day's plan says.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ruche.demo import SEED
from ruche.server.db import make_engine
from ruche.server.models import AuditKind, AuditRow, StoredEvent
from ruche.sim.demo_plan import cut, demo_day, demo_site

pytestmark = pytest.mark.integration


def run_demo(workdir: Path) -> tuple[dict[str, Any], str]:
    """`ruche demo --broker embedded --duration 30 --json`: its summary and its chatter."""
    done = subprocess.run(
        [sys.executable, "-m", "ruche", "demo", "--broker", "embedded", "--duration", "30",
         "--speed", "600", "--json", "--dir", str(workdir)],
        capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    summary: dict[str, Any] = json.loads(done.stdout)
    return summary, done.stderr


def stored(database: Path) -> tuple[dict[str, int], Counter[str]]:
    """Events per channel and door decisions, read with the test's own queries."""
    engine = make_engine(f"sqlite:///{database}")
    try:
        with Session(engine) as session:
            channels = select(StoredEvent.channel, func.count()).group_by(StoredEvent.channel)
            audit = select(AuditRow.allowed).where(AuditRow.kind == AuditKind.DECISION)
            events = dict(session.execute(channels).all())
            doors = Counter("allowed" if a else "denied" for a in session.scalars(audit))
            return events, doors
    finally:
        engine.dispose()


class TestDemoOnEmbeddedBroker:
    """The demo runs on the embedded broker, says so, and stores its day: every planned
    event once, every tap decided as planned."""

    def test_demo_summary_is_what_the_stores_hold(self, tmp_path: Path):
        workdir = tmp_path / "demo"
        summary, chatter = run_demo(workdir)
        assert "broker:    embedded Python broker on 127.0.0.1:" in chatter, "which broker"
        assert summary["broker"] == "embedded"
        assert (workdir / "broker" / "embedded-broker.log").exists()
        assert chatter.rstrip().endswith("bye")

        played = summary["played"]
        day = demo_day(demo_site(40), date.fromisoformat(played["day"]), seed=SEED)
        plan = cut(day.plan, datetime.fromisoformat(played["until"]))
        assert played["planned"] == played["sent"] == played["acked"] == plan.total > 0

        events, doors = stored(workdir / "ruche.db")
        planned = Counter(e.topic.channel.value for s in plan.events.values() for e in s)
        assert events == dict(planned) == summary["events"]
        granted = Counter("allowed" if t.granted else "denied" for t in plan.taps)
        assert doors == granted
        assert summary["door_decisions"] == {"allowed": granted["allowed"], "denied": 2}
