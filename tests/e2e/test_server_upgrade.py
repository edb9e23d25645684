"""An agent keeps working across a server upgrade.

A real agent (in process, its outbox on disk) and `ruche server run` (its own process, on
SQLite) on the session's Mosquitto. The server stops; the agent decides taps from its
allow-list and queues everything in its outbox. The database goes back one schema
revision (Alembic's downgrade of the last migration: the database a server one release
older left), and the server starts again: it migrates at start, and the agent's outbox
drains into it with every event stored once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import text

from ruche.broker import PresenceState
from ruche.server.storage.db import alembic_config, make_engine, migrating, run_migrations
from ruche.sim.services.sockets import free_port, wait_for_port

pytestmark = pytest.mark.integration

UID = bytes.fromhex("04a22b1a")


@contextmanager
def serving(config: Path, log: Path) -> Iterator[None]:
    """`ruche server run` on `config` with its JSON log in `log`, until the block ends."""
    port = int(config.read_text(encoding="utf-8").rsplit("port = ", 1)[1].split()[0])
    with log.open("ab") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ruche", "server", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL, stderr=sink,
            env={**os.environ, "RUCHE_LOG_FORMAT": "json"},
        )  # fmt: skip
    try:
        assert wait_for_port("127.0.0.1", port, timeout=30), log.read_text()
        yield
    finally:
        proc.terminate()
        assert proc.wait(30) == 0, log.read_text()


def revision(url: str) -> str:
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return str(connection.execute(text("SELECT version_num FROM alembic_version")).scalar())
    finally:
        engine.dispose()


def downgrade_last_migration(url: str) -> None:
    with migrating(url) as config:
        command.downgrade(config, "-1")


def wait_all_acked(agent: Any, timeout: float = 30.0) -> int:
    """Wait until the server has acked every event the agent produced; return how many."""
    deadline = time.monotonic() + timeout
    while True:
        produced = agent.outbox.next_seq - 1
        if produced and agent.outbox.acked_seq == produced:
            return int(produced)
        assert time.monotonic() < deadline, (
            f"acked {agent.outbox.acked_seq} of {produced}, {agent.outbox.depth} waiting"
        )
        time.sleep(0.05)


class TestServerUpgrade:
    """Events the agent queued while the server was down for an upgrade all land once."""

    def test_outbox_drains_into_the_migrated_server(
        self,
        site: Any,
        edge_agent: Callable[..., Any],
        register_devices: Callable[..., None],
        tmp_path: Path,
    ) -> None:
        database = tmp_path / "ruche.db"
        url = f"sqlite:///{database}"
        run_migrations(url)
        register_devices(url, site.site, desks={"agent-a": ["desk-1"]},
                         doors={"agent-a": ["front"]})  # fmt: skip
        server = site.broker.server
        config = tmp_path / "server.toml"
        config.write_text(
            f'database_url = "{url}"\n[mqtt]\nhost = "{site.broker.host}"\n'
            f'port = {site.broker.port}\nusername = "{server.username}"\n'
            f'password = "{server.password.get_secret_value()}"\n[http]\nport = {free_port()}\n',
            encoding="utf-8",
        )
        scripts = ScriptDirectory.from_config(alembic_config(url))
        head = scripts.get_current_head()
        assert head is not None
        previous = scripts.get_revision(head).down_revision
        before, after = tmp_path / "before.log", tmp_path / "after.log"
        agent = edge_agent().agent

        with serving(config, before):
            online = agent.tap("front", UID, "front-reader")
            agent.record_presence("desk-1", PresenceState.OCCUPIED)
            acked_before = wait_all_acked(agent)
        assert online.source == "online"

        offline = [agent.tap("front", UID, "front-reader") for _ in range(3)]
        for state in (PresenceState.VACANT, PresenceState.OCCUPIED, PresenceState.VACANT):
            agent.record_presence("desk-1", state)
        assert [o.source for o in offline] == ["offline"] * 3
        queued = agent.outbox.next_seq - 1 - acked_before
        assert queued == 3 * 2 + 3, "each offline tap and its decision, each desk change"
        assert agent.outbox.depth == queued

        downgrade_last_migration(url)
        assert revision(url) == previous

        with serving(config, after):
            produced = wait_all_acked(agent)

        assert produced == acked_before + queued
        assert revision(url) == head
        lines = [
            json.loads(line) for line in after.read_text().splitlines() if line.startswith("{")
        ]
        assert any(
            line["msg"].startswith(f"Running upgrade {previous} -> {head}") for line in lines
        ), "the server migrated at start"
        engine = make_engine(url)
        try:
            with closing(engine.connect()) as connection:
                rows = connection.execute(
                    text("SELECT seq, channel FROM events WHERE site = :site AND agent = 'agent-a'"
                         " ORDER BY seq"), {"site": site.site},
                ).all()  # fmt: skip
        finally:
            engine.dispose()
        assert [seq for seq, _ in rows] == list(range(1, produced + 1)), "each event once"
        channels = [channel for seq, channel in rows if seq > acked_before]
        assert sorted(channels) == sorted(["tap"] * 3 + ["door_event"] * 3 + ["presence"] * 3)
