"""`ruche demo` plays a coworking day, and its summary is what the stores hold.

The first test runs the command as a person would (`ruche demo --duration 60 --json`)
with `--dir`, so SQLite and InfluxDB's data stay behind; then it reads them itself (its
own queries, its own influxd on the demo's data directory) and plans the same day again
(`ruche.sim.demo.plan`, pure) to know what should be there. The second plays a day with
`ruche.sim.demo.run.Demo` in this process and stops its InfluxDB mid-day: `/readyz` turns red
naming InfluxDB, green once it is back, and no point is lost.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ruche.dashboards.health import DASHBOARD as HEALTH
from ruche.dashboards.macros import expand
from ruche.server.storage.db import make_engine
from ruche.server.storage.enums import AuditKind, BookingStatus
from ruche.server.storage.models import (
    AuditRow,
    BookingRow,
    DeskSessionRow,
    MembershipRow,
    PlanRow,
    StoredEventRow,
    VisitRow,
)
from ruche.sim.day import MEASUREMENTS, ExpectedSession
from ruche.sim.demo.plan import PLANS, cut, deadline, demo_day, demo_site
from ruche.sim.demo.run import INFLUX_DATABASE, SEED, Console, Demo, Played
from ruche.sim.services.influxd import InfluxdProcess
from ruche.sim.testing.waits import eventually

pytestmark = pytest.mark.integration

RUCHE = [sys.executable, "-m", "ruche"]
EVENT_MEASUREMENTS = {m: c.value for c, m in MEASUREMENTS.items()}
"""InfluxDB measurement -> the event channel it holds."""


def count_points(url: str, database: str = "ruche") -> dict[str, int]:
    """Points per measurement, counted on the first field every point of it has."""

    def query(q: str) -> list[dict[str, Any]]:
        response = httpx.post(f"{url}/query", data={"db": database, "q": q}, timeout=30)
        response.raise_for_status()
        return response.json()["results"][0].get("series") or []

    counts = {}
    for row in query("SHOW MEASUREMENTS")[0]["values"]:
        name = row[0]
        series = query(f'SELECT count(*) FROM "{name}"')  # noqa: S608 - names InfluxDB gave
        counts[name] = max(series[0]["values"][0][1:])
    return counts


@dataclass(frozen=True)
class Stored:
    """What the demo's SQLite holds, read with the test's own queries."""

    events: dict[str, int]
    decisions: Counter[str]
    sessions: list[DeskSessionRow]
    visits: int
    bookings: Counter[str]
    members: Counter[str]
    """Members per plan."""


def read_sqlite(path: Path) -> Stored:
    engine = make_engine(f"sqlite:///{path}")
    try:
        with Session(engine) as session:
            channels = select(StoredEventRow.channel, func.count()).group_by(StoredEventRow.channel)
            audit = select(AuditRow.allowed).where(AuditRow.kind == AuditKind.DECISION)
            plans = select(PlanRow.name).join(MembershipRow, MembershipRow.plan_id == PlanRow.id)
            return Stored(
                events=dict(session.execute(channels).all()),
                decisions=Counter("allowed" if a else "denied" for a in session.scalars(audit)),
                sessions=list(session.scalars(select(DeskSessionRow))),
                visits=session.scalar(select(func.count()).select_from(VisitRow)) or 0,
                bookings=Counter(str(s) for s in session.scalars(select(BookingRow.status))),
                members=Counter(session.scalars(plans)),
            )
    finally:
        engine.dispose()


def run_demo_json(workdir: Path) -> dict[str, Any]:
    """`ruche demo --duration 60 --json` with `--dir`: its summary."""
    started = time.monotonic()
    done = subprocess.run(
        [*RUCHE, "demo", "--duration", "60", "--speed", "600", "--json", "--dir", str(workdir)],
        capture_output=True, text=True, timeout=150, check=False,
    )  # fmt: skip
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-4000:]
    summary: dict[str, Any] = json.loads(done.stdout)  # the one JSON object, and nothing else
    assert "live page: http://127.0.0.1:" in done.stderr, "the chatter went to stderr"
    assert done.stderr.rstrip().endswith("bye")
    print(f"the demo took {took:.0f} s; its summary: {json.dumps(summary)}")
    assert took < 120
    return summary


class TestDemoCommand:
    def test_json_summary_is_what_the_stores_hold(self, tmp_path: Path):
        workdir = tmp_path / "demo"
        summary = run_demo_json(workdir)

        # What the day was: the same plan again, cut where the demo stopped.
        played = summary["played"]
        until = datetime.fromisoformat(played["until"])
        day = demo_day(demo_site(40), date.fromisoformat(played["day"]), seed=SEED)
        plan = cut(day.plan, until)
        assert not played["complete"]
        assert not played["interrupted"]
        assert (until - day.begin).total_seconds() == 60 * 600, "60 s of play at 600x"
        assert (played["from"], played["to"]) == ("07:30", "17:30")
        assert played["planned"] == played["sent"] == played["acked"] == plan.total

        stored = read_sqlite(workdir / "ruche.db")
        # Events: every planned one stored once, and the summary says so.
        planned = Counter(e.topic.channel.value for s in plan.events.values() for e in s)
        assert stored.events == dict(planned) == summary["events"]
        assert sum(stored.events.values()) == plan.total
        # Doors: every tap decided once, as planned (the revoked badge refused twice).
        granted = Counter("allowed" if t.granted else "denied" for t in plan.taps)
        assert stored.decisions == granted
        assert summary["door_decisions"] == {"allowed": granted["allowed"], "denied": 2}
        self.check_sessions(summary, stored, [s for s in plan.sessions if s.start < until], until)
        # Bookings: all made (ahead, as played, or at the end); no-shows released by deadline.
        no_shows = sum(1 for b in plan.bookings if b.no_show and deadline(b, 15) <= until)
        assert stored.bookings[BookingStatus.NO_SHOW.value] == no_shows == 3
        assert stored.bookings[BookingStatus.BOOKED.value] == len(plan.bookings) - no_shows
        assert summary["bookings"] == {"total": len(plan.bookings), **stored.bookings}

        # InfluxDB: read with an influxd of the test's own on the demo's data.
        with InfluxdProcess(workdir / "influxd") as influxd:
            points = count_points(influxd.url)
        assert points == summary["points"]
        assert {c: points[m] for m, c in EVENT_MEASUREMENTS.items()} == stored.events

        # The invoice preview: every plan and its members, totals adding up.
        invoices = summary["invoices"]
        assert not invoices["issued"]
        assert invoices["period"] == played["day"][:7]
        assert [p["plan"] for p in invoices["plans"]] == [p.name for p in PLANS]
        assert {p["plan"]: p["members"] for p in invoices["plans"]} == dict(stored.members)
        total = sum(Decimal(p["total"]) for p in invoices["plans"])
        assert Decimal(invoices["total"]) == total > 0

    @staticmethod
    def check_sessions(
        summary: dict[str, Any], stored: Stored, begun: list[ExpectedSession], until: datetime
    ) -> None:
        """One desk session per sitting begun before the stop, open if its member still sat."""
        rows = stored.sessions
        by = Counter(r.attributed_by for r in rows)
        assert len(rows) == len(begun) == summary["sessions"]["total"]
        assert by == Counter(s.attributed_by for s in begun)
        assert set(by) == {"badge", "booking", "none"}
        assert {k: summary["sessions"][k] for k in by} == dict(by)
        still = sum(1 for s in begun if s.end >= until)
        assert sum(1 for r in rows if r.end is None) == still == summary["sessions"]["open"]
        assert stored.visits == summary["visits"] > 0


class TestInfluxDown:
    """The demo's InfluxDB stopped mid-day: `/readyz` names it, `/metrics` counts the failed
    writes and the spool, the health dashboard shows the outage afterwards, nothing is lost."""

    def test_readyz_red_while_influxdb_is_down(self, tmp_path: Path):  # noqa: PLR0915 - one story
        chatter = io.StringIO()
        (tmp_path / "demo").mkdir()
        demo = Demo(tmp_path / "demo", speed=600, console=Console(chatter))
        stop = threading.Event()
        outcome: dict[str, Played | BaseException] = {}

        def play() -> None:
            try:
                outcome["played"] = demo.play(stop, duration=40)
            except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
                outcome["error"] = exc

        player = threading.Thread(target=play, name="demo-day")
        try:
            assert demo.start(stop)
            assert demo.influxd is not None

            def readyz() -> httpx.Response:
                return httpx.get(f"{demo.api}/readyz", timeout=5)

            eventually(lambda: readyz().status_code == 200, what="/readyz green at the start")
            player.start()
            engine = make_engine(demo.database_url)

            def stored() -> int:
                with Session(engine) as session:
                    return session.scalar(select(func.count()).select_from(StoredEventRow)) or 0

            try:
                eventually(lambda: stored() > 4000, what="the morning stored")
            finally:
                engine.dispose()

            outage_start = datetime.now(UTC)
            demo.influxd.stop()
            red = eventually(lambda: (r := readyz()).status_code == 503 and r.json(),
                             what="/readyz red")  # fmt: skip
            assert red["ready"] is False
            assert red["checks"]["influxdb"].startswith("down"), red
            assert red["checks"]["database"] == red["checks"]["mqtt"] == "ok"
            # The day goes on: events stored and acked, points spooled, and /metrics
            # counts the failed writes and the spool's depth.
            down = eventually(
                lambda: (m := scrape(demo.api))["errors"] > 0 and m["spool"] > 0 and m,
                what="/metrics counting failed writes and the spool",
            )
            assert down["up"] == 0
            time.sleep(12)  # at least one server_stats point (every 10 s) while down
            demo.influxd.start()
            eventually(lambda: readyz().status_code == 200, what="/readyz green again")
            outage_end = datetime.now(UTC)

            player.join(120)
            assert not player.is_alive()
            played = outcome.get("played")
            assert isinstance(played, Played), outcome
            summary = demo.finish(played)
            # Afterwards the health dashboard shows the outage: its spool and write-error
            # panels, run as Grafana would over the demo's own InfluxDB.
            shown = health_panels(demo.influxd.url, outage_start, outage_end)
            assert shown["spooled"] > 0, shown
            assert shown["errors"] > 0, shown
        finally:
            stop.set()
            if player.ident is not None:
                player.join(30)
            demo.close()
        print(chatter.getvalue())
        assert played.acked == played.planned == sum(summary["events"].values())
        points = summary["points"]
        assert {c: points[m] for m, c in EVENT_MEASUREMENTS.items()} == summary["events"]


def scrape(api: str) -> dict[str, float]:
    """The InfluxDB figures of the server's /metrics."""
    text = httpx.get(f"{api}/metrics", timeout=5).text
    found = {"errors": 0.0, "spool": 0.0, "up": -1.0}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ruche_influx_write_errors_total":
                found["errors"] += sample.value
            elif sample.name == "ruche_influx_spool_points":
                found["spool"] = sample.value
            elif sample.name == "ruche_influx_up":
                found["up"] = sample.value
    return found


def health_panels(url: str, start: datetime, end: datetime) -> dict[str, float]:
    """The largest spool and error count the health dashboard's panels show over the
    outage (give or take a minute), from the dashboard's own queries."""
    panels = {p.title: p for p in HEALTH.panels}
    spool_query = next(q for q in panels["InfluxDB writes"].queries if "spool_points" in q.influxql)
    errors_query = panels["InfluxDB write errors"].queries[0]
    shown = {}
    for name, query in (("spooled", spool_query), ("errors", errors_query)):
        text = expand(query.influxql, start=start - timedelta(minutes=1),
                      end=end + timedelta(minutes=1), interval=timedelta(seconds=10),
                      variables={"site": "demo", "desk": ".*", "tz": "Europe/Paris"})  # fmt: skip
        answer = httpx.get(f"{url}/query", params={"db": INFLUX_DATABASE, "q": text}, timeout=10)
        answer.raise_for_status()
        values = [
            row[1]
            for series in answer.json()["results"][0].get("series", [])
            for row in series["values"]
            if row[1] is not None
        ]
        shown[name] = max(values, default=0.0)
    return shown
