"""The live floor page (`/`) in real headless Chromium (Debian's, driven by Playwright),
and who it lets in over HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from playwright.sync_api import Page

from ruche.broker import Presence, PresenceState, Topic, encode
from ruche.server import registry
from ruche.server.api.app import create_app
from ruche.server.messaging.connection import MqttOptions
from ruche.server.occupancy.live import LiveHub
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.storage.db import make_engine, make_sessions, run_migrations, transaction
from ruche.server.storage.enums import Role
from ruche.sim.services.sockets import free_port, wait_for_port
from ruche.sim.testing.fakes import RecordingPorts

pytestmark = pytest.mark.integration

MANAGER = "floor@example.org"
MEMBER = "ada@example.org"
PASSWORD = "correct horse battery"


def seed(url: str, site: str) -> str:
    """A site with two zones of desks read by agent-a, its manager and a member who sign
    in with `PASSWORD`; returns a manager key for it (a machine's)."""
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
        member = registry.create_member(session, name="Ada", email=MEMBER)
        session.flush()
        now = datetime.now(UTC)
        manager = accounts.create_person(session, email=MANAGER, role=Role.MANAGER,
                                         site_id=row.id, now=now, locale="en")  # fmt: skip
        ada = accounts.create_person(session, email=MEMBER, role=Role.MEMBER,
                                     member_id=member.id, now=now)  # fmt: skip
        manager.password_hash = ada.password_hash = hash_password(PASSWORD)
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


def sign_in(page: Page, base: str, email: str) -> None:
    """Open `/`, get sent to sign in, sign in: back on `/` (or where the person belongs)."""
    page.goto(base + "/")
    page.wait_for_url("**/signin?next=/")
    page.fill("#signin-email", email)
    page.fill("#signin-password", PASSWORD)
    with page.expect_navigation():
        page.click("form[action='/signin'] button[type=submit]")


class TestFloorPage:
    """A manager signed in sees a desk turn occupied within a second of the radar."""

    def test_desk_turns_occupied_live(self, site, served, chromium, artifacts):
        base, _ = served
        agent = site.connect_agent("agent-a")
        context = chromium.new_context(locale="en-GB")
        try:
            page = context.new_page()
            sign_in(page, base, MANAGER)
            assert page.url == base + "/"
            assert page.inner_text("h1") == "Live floor"
            assert page.locator("input[name=key]").count() == 0, "keys are for machines"
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

    def test_a_member_goes_home_and_a_key_stays_for_machines(self, served, chromium):
        base, secret = served
        context = chromium.new_context()
        try:
            page = context.new_page()
            sign_in(page, base, MEMBER)
            assert page.url == base + "/my/book"
        finally:
            context.close()
        state = httpx.get(base + "/live/state", headers={"Authorization": f"Bearer {secret}"})
        assert state.status_code == 200
        assert state.json()["sites"][0]["desks"]
        bare = httpx.get(base + "/", follow_redirects=False)
        assert (bare.status_code, bare.headers["location"]) == (303, "/signin?next=/")
