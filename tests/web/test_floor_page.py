"""The live floor page in real headless Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import uvicorn

from ruche.broker import Presence, PresenceState, Topic, encode
from ruche.server import registry
from ruche.server.api.app import create_app
from ruche.server.messaging.connection import MqttOptions
from ruche.server.occupancy.live import LiveHub
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import Role
from ruche.sim.services.sockets import free_port, wait_for_port
from ruche.sim.testing.fakes import RecordingPorts

pytestmark = pytest.mark.integration


def seed(url: str, site: str) -> str:
    """A site with two zones of desks read by agent-a; returns a manager key for it."""
    run_migrations(url)
    with transaction(make_sessions(make_engine(url))) as session:
        row = registry.create_site(session, slug=site, name="Floor test", timezone="Europe/Paris")
        agent = registry.create_agent(session, site_id=row.id, slug="agent-a")
        open_space = registry.create_zone(session, site_id=row.id, name="Open space")
        quiet = registry.create_zone(session, site_id=row.id, name="Quiet room")
        session.flush()
        for x in range(3):
            registry.create_desk(session, zone_id=open_space.id, slug=f"desk-{x}",
                                 agent_id=agent.id, x=x, y=0)  # fmt: skip
        registry.create_desk(session, zone_id=quiet.id, slug="quiet-0", agent_id=agent.id,
                             x=0, y=0)  # fmt: skip
        _, secret = registry.create_api_key(session, role=Role.MANAGER, site_id=row.id,
                                            name="floor manager")  # fmt: skip
        return secret


@pytest.fixture
def served(site, tmp_path) -> Iterator[tuple[str, str]]:
    """The app with a started LiveHub, served by uvicorn on a free port: (base url, key)."""
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    secret = seed(url, site.site)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    server_account = site.broker.server
    hub = LiveHub(sessions, MqttOptions(
        host=site.broker.host, port=site.broker.port, username=server_account.username,
        password=server_account.password.get_secret_value()), site=site.site)  # fmt: skip
    hub.start()
    ports = RecordingPorts()
    app = create_app(sessions=sessions, commands=ports, listener=ports, live=hub)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_config=None, access_log=False,
        timeout_graceful_shutdown=2,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        assert wait_for_port("127.0.0.1", port, timeout=10), "uvicorn did not start"
        yield f"http://127.0.0.1:{port}", secret
    finally:
        hub.stop()
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "uvicorn did not stop"
        engine.dispose()


class TestFloorPage:
    """A manager logged into the page sees a desk turn occupied within a second of the radar."""

    def test_desk_turns_occupied_live(self, site, served, chromium, artifacts):
        base, secret = served
        agent = site.connect_agent("agent-a")
        context = chromium.new_context()
        try:
            page = context.new_page()
            page.goto(base + "/")
            page.fill("#key", secret)
            page.click("#login button[type=submit]")
            desk = f'[data-site="{site.site}"] [data-desk="desk-1"]'
            page.wait_for_selector(f'{desk}[data-state="free"]', timeout=5000)
            page.wait_for_selector('#link[data-state="live"]', timeout=5000)
            assert page.text_content(f'[data-site="{site.site}"] [data-headcount]') == "0 present"
            assert page.is_visible('[data-zone="Quiet room"] [data-desk="quiet-0"]')

            sent = time.monotonic()
            seen = Presence(seq=1, ts=datetime.now(UTC), mono=1.0, state=PresenceState.OCCUPIED)
            agent.publish(str(Topic.presence(site.site, "agent-a", "desk-1")), encode(seen))
            page.wait_for_selector(f'{desk}[data-state="occupied"]', timeout=3000)
            latency = time.monotonic() - sent
            print(f"desk turned occupied {latency * 1000:.0f} ms after the publish")
            assert latency < 1.0

            assert page.text_content(f'[data-site="{site.site}"] [data-headcount]') == "1 present"
            page.screenshot(path=str(artifacts / "floor.png"), full_page=True)
        finally:
            context.close()
