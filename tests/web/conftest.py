"""What the page tests share: Chromium with every request off this machine refused,
axe-core's check, and screenshots at desktop and phone sizes kept in test-artifacts/."""

from __future__ import annotations

import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from journeys import Journey, seed
from playwright.sync_api import Browser, BrowserContext, Page, Route, sync_playwright

from ruche.server.api.app import create_app
from ruche.server.api.pages import signin
from ruche.server.api.pages.rendering import ASSETS, NAVIGATION, STATIC, Viewer, render
from ruche.server.run import ServerWorkers
from ruche.server.settings import ServerMail, ServerMqtt, ServerSettings
from ruche.server.storage.db import make_engine, make_sessions, run_migrations
from ruche.server.storage.enums import Role
from ruche.sim.services.sockets import free_port, wait_for_port
from ruche.sim.testing.fakes import RecordingPorts
from ruche.sim.testing.mail import smtp_server

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
AXE = Path(__file__).parent / "vendor" / "axe-core" / "axe.min.js"
# The rules axe runs: WCAG 2.1 A and AA, and its best practices (landmarks, one h1, ...).
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
SIZES: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


def serve(app: FastAPI) -> Iterator[str]:
    """`app` served by uvicorn on a free port of 127.0.0.1 until the generator closes."""
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
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "uvicorn did not stop"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The whole app (create_app) over a migrated SQLite database, served on 127.0.0.1
    once per test module: its base URL."""
    url = f"sqlite:///{tmp_path_factory.mktemp('pages') / 'ruche.db'}"
    run_migrations(url)
    engine = make_engine(url)
    ports = RecordingPorts()
    try:
        yield from serve(create_app(sessions=make_sessions(engine), commands=ports, listener=ports))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def shell_base() -> Iterator[str]:
    """The pages' routers with `/shell/<role>`: the sign-in page as a signed-in person of
    that role sees the header (navigation, sign-out), served on 127.0.0.1."""
    app = FastAPI(docs_url=None, redoc_url=None)
    app.include_router(signin.router)
    app.mount(ASSETS, StaticFiles(directory=STATIC), name="assets")

    @app.get("/shell/{role}")
    def shell(request: Request, role: Role) -> Response:
        request.state.csrf_token = "token"
        viewer = Viewer("Ada Lovelace", role)
        return render(request, "signin.html", viewer=viewer, message=None, next="/")

    # Every link of the navigation is served, so the header shows all a role may have.
    for item in NAVIGATION:
        app.add_api_route(item.path, lambda: Response(status_code=204), methods=["GET"])

    yield from serve(app)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, one per test module (Playwright's sync API allows one at a time)."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def artifacts() -> Path:
    """Where browser tests keep their screenshots (`make clean` removes it)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@dataclass
class Offline:
    """Requests the browser tried to send off this machine, all refused."""

    blocked: list[str] = field(default_factory=list)

    def route(self, route: Route) -> None:
        host = urllib.parse.urlsplit(route.request.url).hostname
        if host == "127.0.0.1" or route.request.url.startswith(("data:", "blob:")):
            route.continue_()
        else:
            self.blocked.append(route.request.url)
            route.abort()


@pytest.fixture
def offline() -> Offline:
    return Offline()


@pytest.fixture
def browse(chromium: Browser, offline: Offline) -> Iterator[Callable[..., Page]]:
    """A page in a new context (`size`: desktop or phone; `locale`: the browser's
    Accept-Language), with every request off 127.0.0.1 refused and listed in `offline`."""
    contexts: list[BrowserContext] = []

    def open_page(size: str = "desktop", locale: str | None = None) -> Page:
        options = dict(SIZES[size])
        if locale is not None:
            options["locale"] = locale
        context = chromium.new_context(**options)
        contexts.append(context)
        context.route("**/*", offline.route)
        return context.new_page()

    try:
        yield open_page
    finally:
        for context in contexts:
            context.close()


def assert_accessible(page: Page) -> None:
    """axe-core finds no serious or critical violation of WCAG 2.1 AA or its best practices
    in `page` as it stands; the failure lists each rule with the elements it found."""
    page.add_script_tag(path=str(AXE))
    results = page.evaluate(
        "tags => axe.run(document, {runOnly: {type: 'tag', values: tags},"
        " resultTypes: ['violations']})",
        AXE_TAGS,
    )
    serious = [v for v in results["violations"] if v["impact"] in ("serious", "critical")]
    report = "\n".join(
        f"{v['id']} ({v['impact']}): {v['help']}\n"
        + "\n".join(f"    {node['target']}: {node['failureSummary']}" for node in v["nodes"])
        for v in serious
    )
    assert not serious, f"axe found on {page.url}:\n{report}"


def screenshot(page: Page, name: str) -> Path:
    """The whole page kept as test-artifacts/pages/<name>.png."""
    path = ARTIFACTS / "pages" / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def audit() -> Callable[[Page, str], None]:
    """Checks a page with axe (`assert_accessible`) and keeps its screenshot as `name`."""

    def check(page: Page, name: str) -> None:
        screenshot(page, name)
        assert_accessible(page)

    return check


@pytest.fixture
def journey(site: Any, edge_agent: Any, tmp_path: Path) -> Iterator[Journey]:
    """A running site for a browser journey (journeys.py says what it holds)."""
    slug = site.site
    url = f"sqlite:///{tmp_path / 'ruche.db'}"
    run_migrations(url)
    engine = make_engine(url)
    sessions = make_sessions(engine)
    server = site.broker.server
    settings = ServerSettings(
        database_url=url,
        mqtt=ServerMqtt(
            host=site.broker.host,
            port=site.broker.port,
            username=server.username,
            password=server.password,
        ),
    )
    # The door agent first, as on a site after a power cut: it waits for the server.
    rig = edge_agent(held_open_s=1.0, sim_door=True)
    assert rig.sim is not None
    ids = seed(sessions, slug, rig.agent.settings.site_key_bytes)
    workers = ServerWorkers.build(settings, sessions)
    workers.start()
    try:
        with smtp_server("http://ruche.test") as (inbox, smtp_port):
            mail = ServerMail(host="127.0.0.1", port=smtp_port, security="none",
                              from_address="ruche@example.org",
                              base_url="http://ruche.test")  # fmt: skip
            app = create_app(sessions=sessions, commands=workers.doors,
                             listener=workers.listener, live=workers.live,
                             health=workers.health_checks(sessions), mail=mail)  # fmt: skip
            for base in serve(app):
                found = Journey(base=base, slug=slug, sessions=sessions, workers=workers,
                                agent=rig.agent, door=rig.sim, inbox=inbox, ids=ids)  # fmt: skip
                deadline = time.monotonic() + 10
                while found.cached() is None:
                    assert time.monotonic() < deadline, "the door agent got no allow-list"
                    time.sleep(0.05)
                yield found
    finally:
        workers.stop()
        engine.dispose()
