"""A running site for browser journeys: the server as `ruche server run` builds it (its
MQTT workers over this test's Mosquitto, the API and pages served by uvicorn, mail through
a real SMTP server), a door agent with its simulated door and NFC reader, and people who
sign in with passwords.

The fixture `journey` (tests/web/conftest.py) builds it; test modules beside this file
import its names: `from journeys import ADA, ADA_UID, Journey`.

```python
def test_a_member_books(journey: Journey, browse, audit):
    page = browse("phone")
    journey.sign_in(page, ADA)
    ...
    assert journey.tap(ADA_UID).allowed
    assert journey.wait_cached(ADA_UID), "the door's allow-list has the badge"
```

What it holds (`Journey`): site `lyon-<unique>` in Europe/Paris, open 24/7; agent-a
drives door `front` (its reader takes `journey.tap(uid)`); agent-b reads desks `d1`..`d6`
in zone "Open space" (a 3 x 2 grid) and `q1`, `q2` in "Quiet room"; plans `resident`
(doors at any time) and `flex` (doors only on a day with a booking). People (password
`PASSWORD` for all):

- `ROOT` admin; `MANAGER` manager of the site;
- `ADA` member on `flex`, badge `ADA_UID`, French; `BOB` member on `resident`, badge
  `BOB_UID`, English; `CLEO` member with no plan and no badge, French.

`journey.ids` has the registry ids by name (sites, zones, desks, doors, plans, members by
e-mail); `journey.inbox` the mail the server sent; `journey.sessions` the database.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from playwright.sync_api import Page
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import Allowlist, Channel, badge_token, decode_payload
from ruche.edge.agent import Agent, TapOutcome
from ruche.edge.allowlist import AllowlistIndex, FailPolicy, OfflineVerdict, decide_offline
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.run import ServerWorkers
from ruche.server.storage.db import transaction
from ruche.server.storage.enums import Role
from ruche.sim.door import SimDoor
from ruche.sim.testing.mail import Inbox
from ruche.sim.testing.sites import ALWAYS, SiteBuilder

PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)
"""Made once: argon2 is slow on purpose."""
ROOT = "root@example.org"
MANAGER = "manager@example.org"
ADA = "ada@example.org"
BOB = "bob@example.org"
CLEO = "cleo@example.org"
ADA_UID = bytes.fromhex("04a22b1a5c8e80")
BOB_UID = bytes.fromhex("04b33c2b6d9f81")
NEW_UID = bytes.fromhex("04c44d3c7ea082")
"""A badge nobody holds yet (to enrol)."""
DOOR = "front"


@dataclass
class Journey:
    """The running site; see the module's docstring."""

    base: str
    slug: str
    sessions: sessionmaker[Session]
    workers: ServerWorkers
    agent: Agent
    door: SimDoor
    inbox: Inbox
    ids: dict[str, Any] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return self.base + path

    def sign_in(self, page: Page, email: str, password: str = PASSWORD) -> None:
        """Sign in through the sign-in page, as a person would; waits for the next page."""
        page.goto(self.url("/signin"))
        page.locator("#signin-email").fill(email)
        page.locator("#signin-password").fill(password)
        with page.expect_navigation():
            page.locator("form[action='/signin'] button[type=submit]").click()

    def token(self, uid: bytes) -> str:
        """The badge token the door agent sends for `uid`."""
        return badge_token(self.agent.settings.site_key_bytes, uid)

    def tap(self, uid: bytes) -> TapOutcome:
        """The badge `uid` at door `front`: the agent asks the server (else decides from
        its cached allow-list) and drives the simulated strike."""
        return self.agent.tap(DOOR, uid, "reader-1")

    def cached(self) -> Allowlist | None:
        """The allow-list the door agent holds on disk (what it decides by offline)."""
        path = self.agent.settings.state_dir / "allowlist.json"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        payload = decode_payload(Channel.ALLOWLIST, data)
        assert isinstance(payload, Allowlist)
        return payload

    def offline_verdict(self, uid: bytes, at: datetime | None = None) -> OfflineVerdict:
        """What the door would decide for `uid` from its cached allow-list, with the
        server unreachable."""
        cached = self.cached()
        index = None if cached is None else AllowlistIndex.build(cached)
        policy = FailPolicy(self.agent.settings.offline_policy)
        return decide_offline(index, self.token(uid), DOOR, at or datetime.now(UTC), policy)

    def wait_cached(self, uid: bytes, *, present: bool = True, timeout: float = 1.0) -> bool:
        """True once the cached allow-list lets `uid` in (`present`) or no longer does,
        within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            if self.offline_verdict(uid).allowed == present:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def seed(sessions: sessionmaker[Session], slug: str, key: bytes) -> dict[str, Any]:
    """The site, its devices, plans, members and people; their ids by kind and name."""
    now = datetime.now(UTC)
    with transaction(sessions) as session:
        site = SiteBuilder(session, slug, name="Ruche Lyon", key=key,
                           opening_hours=ALWAYS)  # fmt: skip
        site.agent("agent-a", doors=[DOOR])
        for n in range(6):
            site.desk(f"d{n + 1}", agent="agent-b", zone="Open space", x=n % 3, y=n // 3)
        for n in range(2):
            site.desk(f"q{n + 1}", agent="agent-b", zone="Quiet room", x=n, y=0)
        resident = site.plan("resident")
        flex = site.plan("flex", booking_only=True)
        ada = site.member("Ada Lovelace", ADA, plan=flex, badge=ADA_UID)
        bob = site.member("Bob Marley", BOB, plan=resident, badge=BOB_UID)
        cleo = site.member("Cléo Dupont", CLEO)
        people = [
            accounts.create_person(session, email=ROOT, role=Role.ADMIN, now=now),
            accounts.create_person(
                session, email=MANAGER, role=Role.MANAGER, site_id=site.id, now=now
            ),
            accounts.create_person(session, email=ADA, role=Role.MEMBER, member_id=ada, now=now),
            accounts.create_person(
                session, email=BOB, role=Role.MEMBER, member_id=bob, now=now, locale="en"
            ),
            accounts.create_person(session, email=CLEO, role=Role.MEMBER, member_id=cleo, now=now),
        ]
        for person in people:
            person.password_hash = PASSWORD_HASH
        return {"site": site.id, "zones": dict(site.zones), "desks": dict(site.desks),
                "doors": dict(site.doors), "agents": dict(site.agents),
                "plans": dict(site.plans), "members": dict(site.members)}  # fmt: skip
