"""Guests over real HTTP (TestClient) on SQLite and PostgreSQL: inviting from the staff
and the member pages, the visitor card, cancelling, who may see what, and the door's
answer for the guest online and in the cached allow-list.

Lyon is open 24/7 (so the tests run at any hour), its door `front` driven by agent
`door-a`; Paris keeps business hours. Ada and Bob are on a Lyon plan, Cleo has none.
Lou manages Lyon, Pia Paris.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import badge_token
from ruche.server.access.allowlists import build_allowlist
from ruche.server.access.facts import access_request, load_access_facts, load_allowlist_inputs
from ruche.server.access.rules import DecisionReason, decide_access
from ruche.server.api.app import create_app
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.registry.schedule import local_day
from ruche.server.settings import ServerMail
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import BadgeRow, GuestInvitationRow, MemberRow, SiteKeyRow
from ruche.sim.testing.fakes import RecordingPorts
from ruche.sim.testing.mail import smtp_server
from ruche.sim.testing.sites import ALWAYS, SiteBuilder

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)
PARIS = ZoneInfo("Europe/Paris")
ADA_UID = bytes.fromhex("04a22b1a5c8e80")
CARD = "04:C4:4D:3C:7E:A0:82"
CARD_UID = bytes.fromhex("04c44d3c7ea082")


def today() -> date:
    return datetime.now(PARIS).date()


@dataclass
class World:
    app: FastAPI
    sessions: sessionmaker[Session]
    ports: RecordingPorts
    ids: dict[str, int]

    def browser(self, who: str | None = None, app: FastAPI | None = None) -> TestClient:
        client = TestClient(app or self.app, follow_redirects=False)
        client.get("/healthz")
        if who is not None:
            answer = client.post("/signin", data={"email": who, "password": PASSWORD,
                                                  "csrf_token": self.token(client)})  # fmt: skip
            assert answer.status_code == 303, answer.text
        return client

    def token(self, client: TestClient) -> str:
        app = client.app
        assert isinstance(app, FastAPI)
        return app.state.people.signer.get().csrf_token(client.cookies["ruche_csrf"])

    def post(self, client: TestClient, path: str, **form: Any) -> Any:
        return client.post(path, data={"csrf_token": self.token(client), **form})

    def invite(self, client: TestClient, base: str, **changes: str) -> Any:
        form = {"site": "lyon", "name": "Grace", "email": "grace@example.org",
                "day": today().isoformat(), "language": "fr"} | changes  # fmt: skip
        return self.post(client, base, **form)

    def invitations(self) -> list[GuestInvitationRow]:
        with self.sessions() as session:
            rows = list(session.scalars(select(GuestInvitationRow).order_by(GuestInvitationRow.id)))
            session.expunge_all()
            return rows

    def decide(self, token: str, now: datetime) -> DecisionReason:
        with transaction(self.sessions) as session:
            facts = load_access_facts(session, "lyon", "door-a", "front", token, now)
        return decide_access(access_request(token, "front", "in"), facts, now).reason

    def cached(self, token: str, now: datetime) -> list[tuple[datetime, datetime]]:
        with transaction(self.sessions) as session:
            inputs = load_allowlist_inputs(session, "lyon", "door-a", now, now + timedelta(days=1))
        allowlist = build_allowlist(inputs, version=1, now=now)
        return [(w.start, w.end) for e in allowlist.entries if e.token == token for w in e.windows]

    def card_token(self) -> str:
        with self.sessions() as session:
            key = session.scalars(select(SiteKeyRow)).first()
            assert key is not None
            return badge_token(key.key, CARD_UID)


@pytest.fixture
def world(db_url: str) -> Iterator[World]:
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        lyon = SiteBuilder(s, "lyon", name="Lyon", opening_hours=ALWAYS)
        lyon.agent("door-a", doors=["front"])
        resident = lyon.plan("resident")
        ada = lyon.member("Ada", "ada@example.org", plan=resident, badge=ADA_UID)
        bob = lyon.member("Bob", "bob@example.org", plan=resident)
        cleo = lyon.member("Cleo", "cleo@example.org")
        paris = SiteBuilder(s, "paris", name="Paris", key=b"p" * 32)
        paris.plan("paris")
        people = [
            ("lou@example.org", Role.MANAGER, lyon.id, None),
            ("pia@example.org", Role.MANAGER, paris.id, None),
            ("ada@example.org", Role.MEMBER, None, ada),
            ("bob@example.org", Role.MEMBER, None, bob),
            ("cleo@example.org", Role.MEMBER, None, cleo),
        ]
        for email, role, site_id, member_id in people:
            person = accounts.create_person(s, email=email, role=role, site_id=site_id,
                                            member_id=member_id, now=now, locale="en")  # fmt: skip
            person.password_hash = PASSWORD_HASH
        ids = {"lyon": lyon.id, "paris": paris.id, "ada": ada, "bob": bob}
    ports = RecordingPorts()
    app = create_app(sessions=sessions, commands=ports, listener=ports)
    yield World(app, sessions, ports, ids)
    engine.dispose()


class TestWhoMayOpen:
    """Staff pages for staff of the site, member pages for the member who invited."""

    def test_signed_out_goes_to_sign_in(self, world):
        assert (
            world.browser().get("/my/guests").headers["location"] == "/signin?next=%2Fmy%2Fguests"
        )
        assert world.browser().get("/manage/guests").status_code == 303

    def test_a_member_cannot_open_the_staff_pages(self, world):
        client = world.browser("ada@example.org")
        assert client.get("/manage/guests").status_code == 403
        assert world.invite(client, "/manage/guests").status_code == 403
        assert world.invitations() == []

    def test_staff_have_no_member_guests(self, world):
        assert world.browser("lou@example.org").get("/my/guests").status_code == 403

    def test_a_member_cannot_open_or_cancel_another_members_invitation(self, world):
        ada = world.browser("ada@example.org")
        invitation = world.invite(ada, "/my/guests").headers["location"].split("?")[0]
        bob = world.browser("bob@example.org")
        assert bob.get(invitation).status_code == 404
        answer = world.post(bob, invitation + "/cancel")
        assert answer.status_code == 404
        assert "This page does not exist" in answer.text
        assert world.invitations()[0].cancelled_at is None
        assert "Grace" not in bob.get("/my/guests").text

    def test_a_manager_cannot_reach_another_sites_guests(self, world):
        ada = world.browser("ada@example.org")
        invitation = world.invite(ada, "/my/guests").headers["location"].split("?")[0]
        staff_path = invitation.replace("/my/", "/manage/")
        pia = world.browser("pia@example.org")
        assert pia.get("/manage/guests?site=lyon").status_code == 404
        assert pia.get(staff_path).status_code == 403
        assert world.post(pia, staff_path + "/card", uid=CARD).status_code == 403
        assert world.post(pia, staff_path + "/cancel").status_code == 403
        assert world.invitations()[0].cancelled_at is None
        assert world.browser("lou@example.org").get(staff_path).status_code == 200

    def test_forms_without_their_csrf_token_are_refused(self, world):
        client = world.browser("ada@example.org")
        form = {"site": "lyon", "name": "Grace", "email": "grace@example.org",
                "day": today().isoformat()}  # fmt: skip
        assert client.post("/my/guests", data=form).status_code == 403
        assert world.invitations() == []


class TestInviting:
    """An invitation lets the guest in from the site's opening until it closes that day."""

    def test_a_member_invites_for_today(self, world):
        client = world.browser("ada@example.org")
        answer = world.invite(client, "/my/guests")
        assert answer.status_code == 303
        assert answer.headers["location"].endswith("?done=invited_no_mail")
        (invitation,) = world.invitations()
        assert invitation.host_member_id == world.ids["ada"]
        assert invitation.invited_by.startswith("person:")
        assert invitation.day == today()
        assert invitation.valid_until == local_day(today(), PARIS)[1]
        assert world.ports.changed == ["lyon"]
        page = html.unescape(client.get(answer.headers["location"]).text)
        assert "No e-mail was sent" in page
        assert "Grace is invited to Lyon" in page
        assert "ask at reception for a visitor card" in page
        assert "The doors open for them all day." in page
        assert "Grace" in client.get("/my/guests").text

    def test_the_guest_is_a_member_row_of_their_own_found_again_next_time(self, world):
        client = world.browser("ada@example.org")
        world.invite(client, "/my/guests")
        world.invite(client, "/my/guests", day=(today() + timedelta(days=1)).isoformat())
        first, second = world.invitations()
        assert first.guest_member_id == second.guest_member_id
        assert first.guest_member_id not in world.ids.values()

    def test_until_closing_time_at_a_site_with_hours(self, world):
        wednesday = today() + timedelta(days=7 + (2 - today().weekday()) % 7)
        pia = world.browser("pia@example.org")
        answer = world.invite(pia, "/manage/guests", site="paris", day=wednesday.isoformat())
        assert "done=invited_no_mail" in answer.headers["location"]
        (invitation,) = world.invitations()
        closing = datetime.combine(wednesday, time(19), tzinfo=PARIS).astimezone(UTC)
        assert invitation.valid_until == closing
        assert invitation.host_member_id is None
        detail = pia.get(answer.headers["location"]).text
        assert "The doors open for them until 19:00, when the site closes." in detail
        sunday = wednesday + timedelta(days=4)
        refused = world.invite(pia, "/manage/guests", site="paris", day=sunday.isoformat(),
                               email="other@example.org")  # fmt: skip
        assert "error=site_closed" in refused.headers["location"]

    @pytest.mark.parametrize(
        ("changes", "code", "french"),
        [
            ({"day": "2020-01-01"}, "day_past", "Ce jour est passé"),
            ({"day": "soon"}, "bad_day", "Choisissez le jour"),
            ({"email": "bob@example.org"}, "cannot_invite", "ne peut pas être invitée"),
            ({"email": "not an address"}, "bad_email", "Indiquez l'adresse e-mail"),
            ({"name": "  "}, "name_missing", "Indiquez le nom"),
            ({"day": "2099-01-01"}, "too_far", "au plus 90 jours"),
        ],
    )  # fmt: skip
    def test_refusals_are_translated(self, world, changes, code, french):
        client = world.browser("ada@example.org")
        client.get("/language/fr")
        answer = world.invite(client, "/my/guests", **changes)
        assert answer.status_code == 303
        assert f"error={code}" in answer.headers["location"]
        assert world.invitations() == []
        assert french in html.unescape(client.get(answer.headers["location"]).text)

    def test_staff_learn_that_a_member_needs_a_day_pass(self, world):
        client = world.browser("lou@example.org")
        answer = world.invite(client, "/manage/guests", email="bob@example.org")
        assert "error=already_member" in answer.headers["location"]
        assert "give them a day pass instead" in client.get(answer.headers["location"]).text

    def test_twice_the_same_day_is_refused(self, world):
        client = world.browser("ada@example.org")
        world.invite(client, "/my/guests")
        again = world.invite(client, "/my/guests")
        assert "error=already_invited" in again.headers["location"]
        assert len(world.invitations()) == 1

    def test_a_member_without_a_plan_cannot_invite(self, world):
        client = world.browser("cleo@example.org")
        assert "Your plan covers no site" in client.get("/my/guests").text
        answer = world.invite(client, "/my/guests")
        assert "error=host_without_plan" in answer.headers["location"]
        assert world.invitations() == []

    def test_the_guest_gets_an_email_in_their_language(self, world):
        with smtp_server() as (inbox, port):
            mail = ServerMail(host="127.0.0.1", port=port, security="none",
                              from_address="ruche@example.org",
                              base_url="http://testserver")  # fmt: skip
            app = create_app(sessions=world.sessions, commands=world.ports,
                             listener=world.ports, mail=mail)  # fmt: skip
            client = world.browser("lou@example.org", app=app)
            answer = world.invite(client, "/manage/guests", language="fr")
            assert answer.headers["location"].endswith("?done=invited")
            message = inbox.to("grace@example.org")
        assert message["Subject"] == "Votre invitation à Lyon"
        body = message.get_body(("plain",))
        assert body is not None
        text = body.get_content()
        assert "vous invite à Lyon" in text
        assert "Les portes s'ouvrent pour vous toute la journée." in text


class TestTheDoor:
    """The visitor card opens the door during the visit; cancelling ends it at once, and
    the door's cached list agrees with its online answer."""

    def _invite_with_card(self, world: World) -> tuple[TestClient, str]:
        lou = world.browser("lou@example.org")
        path = world.invite(lou, "/manage/guests").headers["location"].split("?")[0]
        world.ports.clear()
        answer = world.post(lou, path + "/card", uid=CARD)
        assert answer.headers["location"].endswith("?done=card"), answer.headers["location"]
        assert world.ports.changed == ["lyon"]
        return lou, path

    def test_the_card_opens_until_closing_then_not(self, world):
        self._invite_with_card(world)
        token = world.card_token()
        now = datetime.now(UTC)
        closing = world.invitations()[0].valid_until
        assert world.decide(token, now) is DecisionReason.SCHEDULE
        assert world.decide(token, closing - timedelta(seconds=1)) is DecisionReason.SCHEDULE
        assert world.decide(token, closing) is DecisionReason.MEMBER_INACTIVE
        windows = world.cached(token, now)
        assert windows == [(now, closing)]

    def test_cancelling_ends_the_access_at_once(self, world):
        lou, path = self._invite_with_card(world)
        world.ports.clear()
        answer = world.post(lou, path + "/cancel")
        assert answer.headers["location"].endswith("?done=cancelled")
        assert world.ports.changed == ["lyon"]
        token = world.card_token()
        now = datetime.now(UTC)
        assert world.decide(token, now) is DecisionReason.MEMBER_INACTIVE
        assert world.cached(token, now) == []
        again = world.post(lou, path + "/cancel")
        assert "error=ended" in again.headers["location"]

    def test_a_card_moves_from_a_past_guest_but_not_from_a_member(self, world):
        lou, path = self._invite_with_card(world)
        world.post(lou, path + "/cancel")
        other = world.invite(lou, "/manage/guests", name="Hedy", email="hedy@example.org")
        hedy = other.headers["location"].split("?")[0]
        assert "done=card" in world.post(lou, hedy + "/card", uid=CARD).headers["location"]
        with world.sessions() as session:
            badge = session.scalars(
                select(BadgeRow).where(BadgeRow.token == world.card_token())
            ).one()
            holder = session.get(MemberRow, badge.member_id)
            assert holder is not None
            assert holder.email == "hedy@example.org"
        taken = world.post(lou, hedy + "/card", uid=ADA_UID.hex())
        assert "error=card_in_use" in taken.headers["location"]
        garbled = world.post(lou, hedy + "/card", uid="not hex")
        assert "error=card_unreadable" in garbled.headers["location"]
        assert world.decide(world.card_token(), datetime.now(UTC)) is DecisionReason.SCHEDULE

    def test_a_member_cancels_their_own_guest(self, world):
        ada = world.browser("ada@example.org")
        path = world.invite(ada, "/my/guests").headers["location"].split("?")[0]
        answer = world.post(ada, path + "/cancel")
        assert answer.headers["location"].endswith("?done=cancelled")
        assert world.invitations()[0].cancelled_at is not None
