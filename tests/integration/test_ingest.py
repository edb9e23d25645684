"""Event ingestion against a real Mosquitto and real SQL: stored once, acked after commit."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from ruche.broker import Presence, PresenceState, Topic, encode
from ruche.edge.link import AgentLink, LinkOptions
from ruche.edge.outbox import Outbox
from ruche.server.messaging.connection import MqttOptions
from ruche.server.occupancy.event_store import stored_count
from ruche.server.occupancy.ingest import IngestWorker
from ruche.server.storage.db import make_engine, make_sessions, run_migrations
from ruche.server.storage.models import AgentProgressRow, RefusedEventRow, StoredEventRow
from ruche.sim.testing.waits import eventually

pytestmark = pytest.mark.integration


DESKS = {"agent-a": [f"desk-{i}" for i in range(3)]}
"""The desks `presence` reports for, as the registry gives them to agent-a."""


@pytest.fixture
def db_url(db_url, site, register_devices) -> str:
    """The rig's database, with the desks `presence` reports for."""
    register_devices(db_url, site.site, desks=DESKS)
    return db_url


def mqtt_options(site) -> MqttOptions:
    server = site.broker.server
    return MqttOptions(host=site.broker.host, port=site.broker.port, username=server.username,
                       password=server.password.get_secret_value())  # fmt: skip


def presence(site: str, agent: str) -> Callable[[int], tuple[str, bytes]]:
    def build(seq: int) -> tuple[str, bytes]:
        state = PresenceState.OCCUPIED if seq % 2 else PresenceState.VACANT
        payload = Presence(seq=seq, ts=datetime.now(UTC), mono=seq / 10, state=state)
        return str(Topic.presence(site, agent, f"desk-{seq % 3}")), encode(payload)

    return build


@pytest.fixture
def agent_link(site, tmp_path) -> Iterator[tuple[Outbox, AgentLink]]:
    account = site.agents["agent-a"]
    outbox = Outbox(tmp_path / "outbox.db")
    options = LinkOptions(
        site=site.site,
        agent="agent-a",
        host=site.broker.host,
        port=site.broker.port,
        username=account.username,
        password=account.password.get_secret_value(),
        resend_after=1.0,
    )
    link = AgentLink(options, outbox, on_command=lambda c: None, on_allowlist=lambda a: None)
    link.start()
    yield outbox, link
    link.stop()
    outbox.close()


def drained(outbox: Outbox, timeout: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout
    while outbox.depth and time.monotonic() < deadline:
        time.sleep(0.05)
    return outbox.depth == 0


@contextlib.contextmanager
def session_on(url: str) -> Iterator[Session]:
    engine = make_engine(url)
    try:
        with make_sessions(engine)() as session:
            yield session
    finally:
        engine.dispose()


def stored_seqs(url: str, site: str) -> list[int]:
    query = (
        select(StoredEventRow.seq).where(StoredEventRow.site == site).order_by(StoredEventRow.seq)
    )
    with session_on(url) as session:
        return list(session.scalars(query))


class TestIngestion:
    """Every event is stored once, and the agent's outbox drains on the server's acks."""

    def test_events_stored_once_and_acked(self, site, db_url, agent_link):
        outbox, link = agent_link
        engine = make_engine(db_url)
        worker = IngestWorker(make_sessions(engine), mqtt_options(site), site=site.site)
        worker.start()
        try:
            build = presence(site.site, "agent-a")
            for _ in range(1500):
                outbox.append(build)
            link.wake()
            assert drained(outbox), f"outbox still holds {outbox.depth}; {worker.stats}"
        finally:
            worker.stop()
            engine.dispose()
        assert stored_seqs(db_url, site.site) == list(range(1, 1501))
        with session_on(db_url) as session:
            progress = session.get(AgentProgressRow, (site.site, "agent-a"))
            assert progress is not None
            assert progress.acked_seq == 1500
            assert stored_count(session) >= 1500

    def test_one_refused_event_among_good_ones_never_stalls_the_agent(
        self, site, db_url, agent_link
    ):
        """A newer agent's event (schema version 2) amid 2,000 good ones: every good one is
        stored and acked, the bad one is kept by key with its reason, and the agent's window
        moves past it and records the refusal."""
        outbox, link = agent_link
        engine = make_engine(db_url)
        worker = IngestWorker(make_sessions(engine), mqtt_options(site), site=site.site)
        worker.start()
        good = presence(site.site, "agent-a")

        def newer(seq: int) -> tuple[str, bytes]:
            topic, data = good(seq)
            return topic, data.replace(b'{"v":1,', b'{"v":2,', 1)

        try:
            for seq in range(1, 2002):
                outbox.append(newer if seq == 700 else good)
            link.wake()
            assert drained(outbox), f"outbox still holds {outbox.depth}; {worker.stats}"
            eventually(lambda: link.stats.refused_by_server == 1, what="the agent told")
        finally:
            worker.stop()
            engine.dispose()
        assert stored_seqs(db_url, site.site) == [s for s in range(1, 2002) if s != 700]
        with session_on(db_url) as session:
            (kept,) = session.scalars(
                select(RefusedEventRow).where(RefusedEventRow.site == site.site)
            ).all()
            assert (kept.agent, kept.seq, kept.reason) == ("agent-a", 700, "unsupported_version")
            progress = session.get(AgentProgressRow, (site.site, "agent-a"))
            assert progress is not None
            assert progress.acked_seq == 2001
        assert worker.stats.refused == 1

    def test_bad_and_duplicate_messages(self, site, db_url):
        engine = make_engine(db_url)
        worker = IngestWorker(make_sessions(engine), mqtt_options(site), site=site.site)
        worker.start()
        try:
            agent = site.connect_agent("agent-a")
            topic, payload = presence(site.site, "agent-a")(1)
            agent.publish(topic, b"{not json").wait_for_publish(5)
            agent.publish(topic, b'{"v":1,"seq":"2"}').wait_for_publish(5)
            agent.publish(topic, payload).wait_for_publish(5)
            agent.publish(topic, payload).wait_for_publish(5)  # redelivered: a duplicate
            deadline = time.monotonic() + 10
            while worker.stats.received < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
        finally:
            worker.stop()
            engine.dispose()
        assert worker.stats.bad == {"bad_json": 1, "wrong_type": 1}
        assert worker.stats.stored == 1
        assert worker.stats.duplicates == 1
        assert stored_seqs(db_url, site.site) == [1]


class TestRefusalFlood:
    """10,000 refused messages in about two seconds write a bounded number of log lines,
    and those lines carry the counts; every refusal is counted."""

    def test_bounded_lines_with_counts(self, site, db_url, caplog):
        caplog.set_level(logging.WARNING, logger="ruche.server.occupancy.ingest")
        engine = make_engine(db_url)
        worker = IngestWorker(make_sessions(engine), mqtt_options(site), site=site.site)
        worker.start()
        try:
            agent = site.connect_agent("agent-a")
            garbage = str(Topic.presence(site.site, "agent-a", "desk-0"))
            elsewhere = str(Topic.presence(site.site, "agent-a", "not-a-desk"))
            started = time.monotonic()
            infos = []
            for seq in range(1, 10_001):
                if seq % 2:
                    infos.append(agent.publish(garbage, b"{not json"))
                else:
                    infos.append(agent.publish(elsewhere, presence(site.site, "x")(seq)[1]))
            for info in infos:
                info.wait_for_publish(10)
            sent_s = time.monotonic() - started
            deadline = time.monotonic() + 30
            while worker.stats.received < 10_000 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            worker.stop()  # writes the pending summary
            engine.dispose()
        assert sent_s < 10, f"the flood took {sent_s:.1f} s to send"
        assert worker.stats.bad == {"bad_json": 5000, "unknown_device": 5000}
        lines = [r for r in caplog.records if r.name == "ruche.server.occupancy.ingest"]
        full = [r for r in lines if "refused (" in r.getMessage()]
        summaries = [r for r in lines if "not logged one by one" in r.getMessage()]
        assert len(lines) <= 30, f"{len(lines)} lines for 10,000 refusals"
        assert len(full) + sum(s.suppressed for s in summaries) == 10_000
        totals: dict[str, int] = {}
        for summary in summaries:
            for reason, count in summary.by_reason.items():
                totals[reason] = totals.get(reason, 0) + count
        assert sum(totals.values()) == 10_000 - len(full)
        assert set(totals) == {"bad_json", "unknown_device"}


WORKER_SCRIPT = textwrap.dedent(
    """
    import sys, threading
    from ruche.server.messaging.connection import MqttOptions
    from ruche.server.storage.db import make_engine, make_sessions
    from ruche.server.occupancy.ingest import IngestWorker

    url, host, port, user, password, site = sys.argv[1:7]
    options = MqttOptions(host=host, port=int(port), username=user, password=password)
    worker = IngestWorker(make_sessions(make_engine(url)), options, site=site)
    worker.start()
    print("ready", flush=True)
    threading.Event().wait()
    """
)


class TestWorkerKilled:
    """Two workers share the stream; one killed with SIGKILL loses and duplicates nothing."""

    @pytest.mark.slow
    def test_one_of_two_workers_killed(self, site, pg_url, agent_link, register_devices):
        run_migrations(pg_url)
        register_devices(pg_url, site.site, desks=DESKS)
        outbox, link = agent_link
        server = site.broker.server
        args = [sys.executable, "-c", WORKER_SCRIPT, pg_url, site.broker.host,
                str(site.broker.port), server.username, server.password.get_secret_value(),
                site.site]  # fmt: skip
        workers = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(2)]
        try:
            for proc in workers:
                assert proc.stdout is not None
                assert proc.stdout.readline().strip() == "ready"
            build = presence(site.site, "agent-a")
            stop = threading.Event()

            def produce() -> None:
                for _ in range(3000):
                    if stop.is_set():
                        return
                    outbox.append(build)
                    link.wake()
                    time.sleep(0.001)

            producer = threading.Thread(target=produce)
            producer.start()
            time.sleep(1.0)
            os.kill(workers[0].pid, signal.SIGKILL)
            producer.join()
            assert drained(outbox, timeout=90), f"outbox still holds {outbox.depth}"
        finally:
            for proc in workers:
                proc.kill()
                proc.wait()
                if proc.stdout is not None:
                    proc.stdout.close()
        assert stored_seqs(pg_url, site.site) == list(range(1, 3001))
