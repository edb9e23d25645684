"""The members and badges pages over real HTTP (FastAPI's TestClient) on SQLite and
PostgreSQL: who may open what, the forms and what they refuse, enrolment by tap through
the door worker's own adapter, and a member's "report lost".

Two sites with keys of their own: Lyon (Max manages it, door `front`) and Paris (Pia
manages it). Ada is on Lyon's plan, with a sign-in account; Bob on Paris's; Cyd on
Lyon's with a badge under each key. Root is an admin.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ruche.broker import badge_token
from ruche.server import registry
from ruche.server.access.enrolment import TapEnrolments
from ruche.server.api.app import create_app
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.settings import ServerMail
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import BadgeStatus, Role
from ruche.server.storage.models import (
    BadgeEnrolmentRow,
    BadgeRow,
    MemberRow,
    MembershipRow,
    PersonRow,
)
from ruche.sim.testing.fakes import RecordingPorts
from ruche.sim.testing.mail import smtp_server

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
PASSWORD_HASH = hash_password(PASSWORD)
"""Made once: argon2 is slow on purpose."""
PARIS = ZoneInfo("Europe/Paris")


@dataclass
class Site:
    app: FastAPI
    sessions: sessionmaker[Session]
    ports: RecordingPorts
    ids: dict[str, int]
    tokens: dict[str, str]

    def browser(self, who: str | None = None) -> TestClient:
        """A browser, signed in as `who` (an e-mail) when given."""
        client = TestClient(self.app, follow_redirects=False)
        client.get("/healthz")  # as a first page would: the browser gets its CSRF cookie
        if who is not None:
            form = {"email": who, "password": PASSWORD, "csrf_token": self.token(client)}
            assert client.post("/signin", data=form).status_code == 303
        return client

    def token(self, client: TestClient) -> str:
        return self.app.state.people.signer.get().csrf_token(client.cookies["ruche_csrf"])

    def post(self, client: TestClient, path: str, **form: Any) -> Any:
        return client.post(path, data={"csrf_token": self.token(client)} | form)

    def english(self, client: TestClient, path: str, **form: Any) -> Any:
        """`path` read (or, with `form`, posted) in English: the switch's cookie outranks
        the staff's own French."""
        client.cookies.set("ruche_lang", "en")
        try:
            return self.post(client, path, **form) if form else client.get(path)
        finally:
            client.cookies.delete("ruche_lang")

    def read(self, query: Any) -> Any:
        with self.sessions() as session:
            return session.execute(query).all()


@pytest.fixture
def site(db_url: str) -> Iterator[Site]:
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    now = datetime.now(UTC)
    since = datetime(2026, 1, 1, tzinfo=UTC)
    with transaction(sessions) as s:
        lyon_key = registry.create_site_key(s)
        paris_key = registry.create_site_key(s)
        lyon = registry.create_site(s, slug="lyon", name="Lyon", timezone="Europe/Paris",
                                    key_id=lyon_key.id)  # fmt: skip
        paris = registry.create_site(s, slug="paris", name="Paris", timezone="Europe/Paris",
                                     key_id=paris_key.id)  # fmt: skip
        agent = registry.create_agent(s, site_id=lyon.id, slug="agent-a")
        front = registry.create_door(s, site_id=lyon.id, slug="front", agent_id=agent.id)
        back = registry.create_door(s, site_id=lyon.id, slug="back", agent_id=agent.id)
        paris_door = registry.create_door(s, site_id=paris.id, slug="hall")
        resident = registry.create_plan(s, name="Resident", site_ids=[lyon.id],
                                        schedule={"kind": "24/7"})  # fmt: skip
        office = registry.create_plan(s, name="Office hours", site_ids=[lyon.id],
                                      schedule={"kind": "business_hours"})  # fmt: skip
        nomad = registry.create_plan(s, name="Nomad", site_ids=[paris.id],
                                     schedule={"kind": "24/7"})  # fmt: skip
        ids = {"lyon": lyon.id, "paris": paris.id, "front": front.id, "back": back.id,
               "hall": paris_door.id, "resident": resident.id, "office": office.id,
               "nomad": nomad.id}  # fmt: skip
        tokens: dict[str, str] = {}
        for name, plan in (("ada", resident), ("bob", nomad), ("cyd", resident)):
            member = registry.create_member(s, name=name.title(), email=f"{name}@example.org")
            registry.create_membership(s, member_id=member.id, plan_id=plan.id, starts_at=since)
            ids[name] = member.id
        ada_badge = registry.enrol_badge(s, ids["ada"], lyon_key, b"ada-card", label="Blue card")
        bob_badge = registry.enrol_badge(s, ids["bob"], paris_key, b"bob-card")
        cyd_lyon = registry.enrol_badge(s, ids["cyd"], lyon_key, b"cyd-lyon", label="Lyon card")
        cyd_paris = registry.enrol_badge(s, ids["cyd"], paris_key, b"cyd-paris", label="Paris card")
        ids |= {"ada_badge": ada_badge.id, "bob_badge": bob_badge.id, "cyd_lyon": cyd_lyon.id,
                "cyd_paris": cyd_paris.id}  # fmt: skip
        tokens["new"] = badge_token(lyon_key.key, b"new-card")
        tokens["other"] = badge_token(lyon_key.key, b"other-card")
        people = [
            accounts.create_person(s, email="ada@example.org", role=Role.MEMBER,
                                   member_id=ids["ada"], now=now, locale="en"),
            accounts.create_person(s, email="bob@example.org", role=Role.MEMBER,
                                   member_id=ids["bob"], now=now),
            accounts.create_person(s, email="root@example.org", role=Role.ADMIN, now=now),
            accounts.create_person(s, email="max@example.org", role=Role.MANAGER,
                                   site_id=lyon.id, now=now),
            accounts.create_person(s, email="pia@example.org", role=Role.MANAGER,
                                   site_id=paris.id, now=now),
        ]  # fmt: skip
        for person in people:
            person.password_hash = PASSWORD_HASH
    ports = RecordingPorts()
    app = create_app(sessions=sessions, commands=ports, listener=ports)
    yield Site(app, sessions, ports, ids, tokens)
    engine.dispose()


def badge_status(site: Site, badge_id: int) -> BadgeStatus:
    return site.read(select(BadgeRow.status).where(BadgeRow.id == badge_id))[0][0]


class TestWhoMayOpenWhat:
    """Signed out: to the sign-in page; a member: no staff page; a manager: their site's
    members only, and of them only the badges under their site's key."""

    @pytest.mark.parametrize("path", ["/manage/members", "/manage/members/1", "/my/badge"])
    def test_signed_out_goes_to_sign_in(self, site, path):
        answer = site.browser().get(path)
        assert answer.status_code == 303
        assert answer.headers["location"] == "/signin?next=" + path.replace("/", "%2F")

    def test_a_member_cannot_open_the_staff_pages(self, site):
        ada = site.browser("ada@example.org")
        for path in ("/manage/members", f"/manage/members/{site.ids['ada']}",
                     "/manage/members/new"):  # fmt: skip
            answer = ada.get(path)
            assert answer.status_code == 403, path
            assert "You cannot open this page" in answer.text
        form = {"name": "Eve", "email": "eve@example.org", "plan_id": site.ids["resident"],
                "starts_on": "2026-12-01", "site": "lyon"}  # fmt: skip
        assert site.post(ada, "/manage/members/new", **form).status_code == 403
        lost = site.post(ada, f"/manage/members/{site.ids['ada']}/badges/{site.ids['ada_badge']}",
                         status="found", site="lyon")  # fmt: skip
        assert lost.status_code == 403

    def test_staff_have_no_badge_page_of_their_own(self, site):
        assert site.browser("max@example.org").get("/my/badge").status_code == 403

    def test_a_manager_sees_their_sites_members_only(self, site):
        max_ = site.browser("max@example.org")
        page = max_.get("/manage/members")
        assert page.status_code == 200
        assert "Ada" in page.text
        assert "Cyd" in page.text
        assert "Bob" not in page.text
        assert max_.get(f"/manage/members/{site.ids['bob']}").status_code == 403
        assert max_.get("/manage/members/999999").status_code == 404
        assert max_.get("/manage/members?site=paris").status_code == 404
        bob_page = site.browser("pia@example.org").get(f"/manage/members/{site.ids['bob']}")
        assert bob_page.status_code == 200

    def test_a_manager_sees_and_changes_only_their_keys_badges(self, site):
        max_, pia = site.browser("max@example.org"), site.browser("pia@example.org")
        cyd = f"/manage/members/{site.ids['cyd']}"
        assert "Lyon card" in max_.get(cyd).text
        assert "Paris card" not in max_.get(cyd).text
        assert "Paris card" in pia.get(cyd).text
        assert "Lyon card" not in pia.get(cyd).text
        # The Paris badge's id put in a Lyon manager's form: the API's 403.
        other = site.post(max_, f"{cyd}/badges/{site.ids['cyd_paris']}", status="lost")
        assert other.status_code == 403
        assert badge_status(site, site.ids["cyd_paris"]) is BadgeStatus.ACTIVE
        # Another member's badge under the member's path: not found there.
        mixed = site.post(max_, f"{cyd}/badges/{site.ids['ada_badge']}", status="lost")
        assert mixed.status_code == 404
        assert badge_status(site, site.ids["ada_badge"]) is BadgeStatus.ACTIVE

    def test_an_admin_sees_every_site_and_chooses_one(self, site):
        root = site.browser("root@example.org")
        assert "Bob" in root.get("/manage/members?site=paris").text
        assert "Bob" not in root.get("/manage/members?site=lyon").text
        page = root.get(f"/manage/members/{site.ids['cyd']}?site=paris")
        assert "Lyon card" in page.text
        assert "Paris card" in page.text

    def test_forms_without_a_csrf_token_are_refused(self, site):
        max_ = site.browser("max@example.org")
        ada = f"/manage/members/{site.ids['ada']}"
        for path, form in (
            ("/manage/members/new", {"name": "Eve", "email": "eve@example.org"}),
            (f"{ada}/profile", {"name": "Ada B", "email": "ada@example.org"}),
            (f"{ada}/active", {"active": "no"}),
            (f"{ada}/badges/{site.ids['ada_badge']}", {"status": "lost"}),
            (f"{ada}/enrolments", {"door_id": str(site.ids["front"])}),
        ):
            assert max_.post(path, data=form).status_code == 403, path
        ada_browser = site.browser("ada@example.org")
        forged = ada_browser.post("/my/badge/lost", data={"badge_id": site.ids["ada_badge"]})
        assert forged.status_code == 403
        assert badge_status(site, site.ids["ada_badge"]) is BadgeStatus.ACTIVE
        assert site.ports.changed == []


class TestMemberList:
    """Search by name or email, filter by active, and page through thousands."""

    def test_search_and_filter(self, site):
        max_ = site.browser("max@example.org")
        assert "Cyd" not in max_.get("/manage/members?q=ADA").text
        found = max_.get("/manage/members?q=cyd%40example").text
        assert "Cyd" in found
        assert "Ada" not in found
        # LIKE's wildcards are searched for as themselves.
        assert "Ada" not in max_.get("/manage/members?q=%25").text
        site.post(max_, f"/manage/members/{site.ids['cyd']}/active", active="no")
        inactive = max_.get("/manage/members?active=no").text
        assert "Cyd" in inactive
        assert "Ada" not in inactive
        assert "Cyd" not in max_.get("/manage/members?active=yes").text

    def test_two_thousand_members_page_by_fifty(self, site):
        start = datetime(2026, 1, 1, tzinfo=UTC)
        with transaction(site.sessions) as s:
            many = [MemberRow(name=f"Member {n:04d}", email=f"m{n}@example.org", active=True)
                    for n in range(2000)]  # fmt: skip
            s.add_all(many)
            s.flush()
            s.add_all(MembershipRow(member_id=m.id, plan_id=site.ids["office"], starts_at=start)
                      for m in many)  # fmt: skip
        max_ = site.browser("max@example.org")
        first = site.english(max_, "/manage/members")
        assert first.status_code == 200
        assert "2,002 members" in first.text
        assert first.text.count('class="card member-row"') == 50
        assert "Page 1 of 41" in first.text
        last = site.english(max_, "/manage/members?page=41").text
        assert last.count('class="card member-row"') == 2
        assert "Member 1999" in last
        assert 'rel="prev"' in last
        assert 'rel="next"' not in last
        french = max_.get("/manage/members?q=member+19").text
        assert "100 membres" in french


class TestAddingAMember:
    """A member, their plan from a date and a sign-in account; bad input says why."""

    def form(self, site: Site, **changes: Any) -> dict[str, Any]:
        return {"name": "Eve Example", "email": "Eve@Example.org",
                "plan_id": str(site.ids["resident"]), "starts_on": "2026-12-15",
                "account": "yes", "locale": "en", "site": "lyon"} | changes  # fmt: skip

    def test_a_member_with_a_plan_and_an_account(self, site):
        max_ = site.browser("max@example.org")
        assert "Add the member" in site.english(max_, "/manage/members/new").text
        answer = site.post(max_, "/manage/members/new", **self.form(site))
        assert answer.status_code == 303
        eve = site.read(select(MemberRow).where(MemberRow.email == "eve@example.org"))[0][0]
        assert answer.headers["location"] == f"/manage/members/{eve.id}?done=created_no_mail"
        [(membership,)] = site.read(select(MembershipRow).where(MembershipRow.member_id == eve.id))
        assert membership.plan_id == site.ids["resident"]
        assert membership.starts_at == datetime.combine(date(2026, 12, 15), time.min, PARIS)
        assert membership.ends_at is None
        [(person,)] = site.read(select(PersonRow).where(PersonRow.member_id == eve.id))
        assert (person.email, person.role, person.locale) == ("eve@example.org", Role.MEMBER, "en")
        page = site.english(max_, answer.headers["location"]).text
        assert "No mail server is configured" in page
        assert "They have a sign-in account." in page
        assert site.ports.changed == ["lyon"]

    @pytest.mark.parametrize(
        ("changes", "code", "english", "french"),
        [
            ({"email": "ADA@example.org"}, 409, "Another member already uses this email.",
             "Un autre membre utilise déjà cet e-mail."),
            ({"name": "  "}, 422, "Give the member a name.", "Donnez un nom au membre."),
            ({"starts_on": "2026-13-01"}, 422, "Give a date as year-month-day",
             "Indiquez une date sous la forme année-mois-jour"),
            ({"email": "not an address"}, 422, "This is not an email address",
             "Ce n\u2019est pas une adresse e-mail"),
            ({"plan_id": "nomad"}, 422, "Choose one of the plans of this site.",
             "Choisissez l\u2019une des formules de ce lieu."),
        ],
    )  # fmt: skip
    def test_bad_input_is_said_in_the_readers_language(self, site, changes, code, english, french):
        max_ = site.browser("max@example.org")
        answer = site.post(max_, "/manage/members/new", **self.form(site, **changes))
        assert answer.status_code == code
        assert french in answer.text
        assert 'role="alert"' in answer.text
        typed = self.form(site, **changes)["starts_on"]
        assert f'value="{typed}"' in answer.text, "what was typed is shown again"
        again = site.english(max_, "/manage/members/new", **self.form(site, **changes))
        assert english in again.text
        assert site.read(select(MemberRow).where(MemberRow.email == "eve@example.org")) == []
        assert site.ports.changed == []

    def test_with_mail_the_member_chooses_a_password_by_link(self, site):
        with smtp_server() as (inbox, port):
            mail = ServerMail(host="127.0.0.1", port=port, security="none",
                              from_address="ruche@example.org",
                              base_url="http://testserver")  # fmt: skip
            mailing = replace(site, app=create_app(sessions=site.sessions, commands=site.ports,
                                                   listener=site.ports, mail=mail))  # fmt: skip
            max_ = mailing.browser("max@example.org")
            answer = mailing.post(max_, "/manage/members/new", **self.form(site))
            assert answer.headers["location"].endswith("?done=created_link")
            link = inbox.link_to("eve@example.org")
        assert link.startswith("/password/reset/")
        eve = mailing.browser()
        page = eve.get(link).headers["location"]
        token = page.split("token=", 1)[1]
        chosen = mailing.post(eve, "/password/reset", token=token, password=PASSWORD)
        assert chosen.headers["location"] == "/signin?reset=done"
        mine = mailing.browser("eve@example.org").get("/my/badge")
        assert mine.status_code == 200
        assert "You have no badge yet." in mine.text, "in the language chosen for her"

    def test_another_sites_plan_is_refused(self, site):
        max_ = site.browser("max@example.org")
        form = self.form(site, plan_id=str(site.ids["nomad"]))
        assert site.post(max_, "/manage/members/new", **form).status_code == 422
        assert (
            site.post(max_, "/manage/members/new", **(form | {"site": "paris"})).status_code == 404
        )


class TestOneMember:
    """Profile, plan from a date, active or not."""

    def test_profile_changes_the_sign_in_email_too(self, site):
        max_ = site.browser("max@example.org")
        ada = f"/manage/members/{site.ids['ada']}"
        empty = site.post(max_, f"{ada}/profile", name=" ", email="ada@example.org")
        assert empty.headers["location"] == f"{ada}?error=name_missing"
        assert "Donnez un nom au membre." in max_.get(empty.headers["location"]).text
        taken = site.post(max_, f"{ada}/profile", name="Ada", email="bob@example.org")
        assert taken.headers["location"] == f"{ada}?error=email_taken"
        saved = site.post(max_, f"{ada}/profile", name="Ada Lovelace", email="ada@lovelace.org")
        assert saved.headers["location"] == f"{ada}?done=saved"
        [(person,)] = site.read(select(PersonRow).where(PersonRow.member_id == site.ids["ada"]))
        assert person.email == "ada@lovelace.org"
        assert site.read(select(MemberRow.name).where(MemberRow.id == site.ids["ada"])) == [
            ("Ada Lovelace",)
        ]

    def test_a_new_plan_from_a_date_ends_the_current_one_the_day_before(self, site):
        max_ = site.browser("max@example.org")
        ada = f"/manage/members/{site.ids['ada']}"
        answer = site.post(max_, f"{ada}/plan", plan_id=str(site.ids["office"]),
                           starts_on="2027-01-01")  # fmt: skip
        assert answer.headers["location"] == f"{ada}?done=plan_changed"
        rows = site.read(select(MembershipRow).where(MembershipRow.member_id == site.ids["ada"])
                         .order_by(MembershipRow.starts_at))  # fmt: skip
        new_year = datetime(2027, 1, 1, tzinfo=PARIS)
        assert [(m.plan_id, m.ends_at) for (m,) in rows] == [
            (site.ids["resident"], new_year),
            (site.ids["office"], None),
        ]
        assert rows[1][0].starts_at == new_year
        page = site.english(max_, ada).text
        assert "from 1 Jan 2026 to 31 Dec 2026" in page
        assert site.ports.changed == ["lyon"]
        # A second change before the one planned would overlap it: refused.
        early = site.post(max_, f"{ada}/plan", plan_id=str(site.ids["resident"]),
                          starts_on="2026-12-20")  # fmt: skip
        assert early.headers["location"] == f"{ada}?error=plan_overlap"
        bad = site.post(max_, f"{ada}/plan", plan_id=str(site.ids["resident"]), starts_on="soon")
        assert bad.headers["location"] == f"{ada}?error=bad_date"
        other = site.post(max_, f"{ada}/plan", plan_id=str(site.ids["nomad"]),
                          starts_on="2027-02-01")  # fmt: skip
        assert other.headers["location"] == f"{ada}?error=bad_plan"

    def test_a_lyon_manager_cannot_end_a_paris_plan(self, site):
        # Cyd has a Lyon badge, so Max sees them; a plan of Paris's is Pia's to end.
        with transaction(site.sessions) as s:
            registry.create_membership(s, member_id=site.ids["cyd"], plan_id=site.ids["nomad"],
                                       starts_at=datetime(2026, 2, 1, tzinfo=UTC))  # fmt: skip
        max_ = site.browser("max@example.org")
        answer = site.post(max_, f"/manage/members/{site.ids['cyd']}/plan",
                           plan_id=str(site.ids["office"]), starts_on="2027-01-01")  # fmt: skip
        assert answer.status_code == 403
        assert site.read(select(MembershipRow.ends_at).where(
            MembershipRow.member_id == site.ids["cyd"])) == [(None,), (None,)]  # fmt: skip

    def test_deactivate_and_reactivate(self, site):
        max_ = site.browser("max@example.org")
        ada = f"/manage/members/{site.ids['ada']}"
        off = site.post(max_, f"{ada}/active", active="no")
        assert off.headers["location"] == f"{ada}?done=deactivated"
        assert site.read(select(MemberRow.active).where(MemberRow.id == site.ids["ada"])) == [
            (False,)
        ]
        assert set(site.ports.changed) == {"lyon", "paris"}
        assert "Reactivate" in site.english(max_, ada).text
        on = site.post(max_, f"{ada}/active", active="yes")
        assert on.headers["location"] == f"{ada}?done=reactivated"


class TestBadges:
    """Lost, revoked, found again; each tells the sites sharing the badge's key."""

    def test_lost_then_found_then_revoked(self, site):
        max_ = site.browser("max@example.org")
        ada = f"/manage/members/{site.ids['ada']}"
        badge = f"{ada}/badges/{site.ids['ada_badge']}"
        lost = site.post(max_, badge, status="lost")
        assert lost.headers["location"] == f"{ada}?done=badge_lost"
        assert badge_status(site, site.ids["ada_badge"]) is BadgeStatus.DISABLED
        assert site.ports.changed == ["lyon"]
        assert "Disabled (lost)" in site.english(max_, ada).text
        site.post(max_, badge, status="found")
        assert badge_status(site, site.ids["ada_badge"]) is BadgeStatus.ACTIVE
        site.post(max_, badge, status="revoked")
        assert badge_status(site, site.ids["ada_badge"]) is BadgeStatus.REVOKED
        again = site.post(max_, badge, status="found")
        assert again.headers["location"] == f"{ada}?error=badge_revoked"
        assert badge_status(site, site.ids["ada_badge"]) is BadgeStatus.REVOKED
        assert site.post(max_, badge, status="stolen").status_code == 422

    def test_a_member_reports_their_own_badge_lost(self, site):
        ada = site.browser("ada@example.org")
        page = ada.get("/my/badge")
        assert page.status_code == 200
        assert "Blue card" in page.text
        assert "Report lost" in page.text
        answer = site.post(ada, "/my/badge/lost", badge_id=str(site.ids["ada_badge"]))
        assert answer.headers["location"] == "/my/badge?done=badge_lost"
        assert badge_status(site, site.ids["ada_badge"]) is BadgeStatus.DISABLED
        assert site.ports.changed == ["lyon"]
        assert "This badge no longer opens any door" in ada.get(answer.headers["location"]).text

    @pytest.mark.parametrize("badge", ["bob_badge", "cyd_lyon", "999999", "abc", ""])
    def test_another_members_badge_id_is_not_found(self, site, badge):
        ada = site.browser("ada@example.org")
        answer = site.post(ada, "/my/badge/lost", badge_id=str(site.ids.get(badge, badge)))
        assert answer.status_code == 404
        assert "This page does not exist" in answer.text
        for other in ("bob_badge", "cyd_lyon"):
            assert badge_status(site, site.ids[other]) is BadgeStatus.ACTIVE
        assert site.ports.changed == []


class TestEnrolmentByTap:
    """An enrolment waits at a door; the door worker's adapter fills it with the next
    unknown token tapped there; the page shows it waiting, then done."""

    def test_open_fill_and_show(self, site):
        max_ = site.browser("max@example.org")
        ada = f"/manage/members/{site.ids['ada']}"
        answer = site.post(max_, f"{ada}/enrolments", door_id=str(site.ids["front"]))
        assert answer.headers["location"] == f"{ada}?done=enrolment_open"
        page = site.english(max_, answer.headers["location"]).text
        assert "Waiting for a tap at front" in page
        assert "/assets/enrolment.js" in page
        [(row,)] = site.read(select(BadgeEnrolmentRow))
        status_path = f"{ada}/enrolments/{row.id}"
        assert max_.get(status_path).json() == {"state": "pending"}
        # Another member's enrolment may not wait at the same door meanwhile.
        cyd = f"/manage/members/{site.ids['cyd']}"
        busy = site.post(max_, f"{cyd}/enrolments", door_id=str(site.ids["front"]))
        assert busy.headers["location"] == f"{cyd}?error=door_busy"
        # A tap at another door, or a known badge at this one, fills nothing.
        taps = TapEnrolments(site.sessions)
        now = datetime.now(UTC)
        assert taps.fill("lyon", "back", site.tokens["new"], now) is None
        enrolled = taps.fill("lyon", "front", site.tokens["new"], now)
        assert enrolled is not None
        assert (enrolled.member_id, enrolled.sites) == (site.ids["ada"], ("lyon",))
        [(badge,)] = site.read(select(BadgeRow).where(BadgeRow.token == site.tokens["new"]))
        assert (badge.member_id, badge.status) == (site.ids["ada"], BadgeStatus.ACTIVE)
        assert taps.fill("lyon", "front", site.tokens["other"], now) is None, "filled once"
        assert max_.get(status_path).json() == {"state": "done"}
        done = site.english(max_, f"{ada}?done=enrolled").text
        assert "The badge was enrolled." in done
        assert "Badge enrolled at front" in done
        assert f"/badges/{badge.id}" in done

    def test_cancel_and_expiry(self, site):
        max_ = site.browser("max@example.org")
        ada = f"/manage/members/{site.ids['ada']}"
        site.post(max_, f"{ada}/enrolments", door_id=str(site.ids["front"]))
        [(row,)] = site.read(select(BadgeEnrolmentRow))
        cancelled = site.post(max_, f"{ada}/enrolments/{row.id}/cancel")
        assert cancelled.headers["location"] == f"{ada}?done=enrolment_cancelled"
        assert max_.get(f"{ada}/enrolments/{row.id}").json() == {"state": "expired"}
        taps = TapEnrolments(site.sessions)
        assert taps.fill("lyon", "front", site.tokens["new"], datetime.now(UTC)) is None
        # An enrolment past its two minutes is not filled either.
        site.post(max_, f"{ada}/enrolments", door_id=str(site.ids["front"]))
        later = datetime.now(UTC) + timedelta(minutes=2, seconds=1)
        assert taps.fill("lyon", "front", site.tokens["new"], later) is None
        assert site.read(select(BadgeRow).where(BadgeRow.token == site.tokens["new"])) == []

    def test_doors_and_enrolments_of_other_sites_or_members(self, site):
        max_ = site.browser("max@example.org")
        ada = f"/manage/members/{site.ids['ada']}"
        hall = site.post(max_, f"{ada}/enrolments", door_id=str(site.ids["hall"]))
        assert hall.headers["location"] == f"{ada}?error=bad_door"
        site.post(max_, f"{ada}/enrolments", door_id=str(site.ids["front"]))
        [(row,)] = site.read(select(BadgeEnrolmentRow))
        cyd = f"/manage/members/{site.ids['cyd']}"
        assert max_.get(f"{cyd}/enrolments/{row.id}").status_code == 404
        assert site.post(max_, f"{cyd}/enrolments/{row.id}/cancel").status_code == 404
        pia = site.browser("pia@example.org")
        assert pia.get(f"{ada}/enrolments/{row.id}").status_code == 403
        bob = site.browser("bob@example.org")
        assert bob.get(f"{ada}/enrolments/{row.id}").status_code == 403
