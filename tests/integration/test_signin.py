"""People who sign in, over real HTTP (FastAPI's TestClient) on SQLite and PostgreSQL,
with the e-mails going through a real SMTP server (aiosmtpd) and read out of it.

Ada is a member with an account and a member API key; Bob is another member; Root is
an admin account. Every CSRF token is made the way the pages make theirs: the app's
own signer over the browser's `ruche_csrf` cookie.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from ruche.cli import main
from ruche.server import registry
from ruche.server.api.app import create_app
from ruche.server.people import accounts
from ruche.server.people.passwords import hash_password
from ruche.server.settings import ServerMail
from ruche.server.storage.db import make_engine, make_sessions, transaction
from ruche.server.storage.enums import Role
from ruche.server.storage.models import OneTimeTokenRow
from ruche.sim.services.sockets import free_port
from ruche.sim.testing.fakes import RecordingPorts
from ruche.sim.testing.mail import Inbox, smtp_server

pytestmark = pytest.mark.integration

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple on the hive door"
PASSWORD_HASH = hash_password(PASSWORD)
"""Made once: argon2 is slow on purpose, and every test needs the same accounts."""


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as running:
        yield running


@dataclass
class Site:
    app: FastAPI
    sessions: sessionmaker[Session]
    inbox: Inbox
    ids: dict[str, int]
    keys: dict[str, str]

    def browser(self, address: str = "192.0.2.1") -> TestClient:
        client = TestClient(self.app, follow_redirects=False, client=(address, 50000))
        client.get("/healthz")  # as a first page would: the browser gets its CSRF cookie
        return client

    def token(self, client: TestClient) -> str:
        return self.app.state.people.signer.get().csrf_token(client.cookies["ruche_csrf"])

    def sign_in(self, client: TestClient, who: str, password: str = PASSWORD, **extra: str) -> Any:
        form = {"email": who, "password": password, "csrf_token": self.token(client)} | extra
        return client.post("/signin", data=form)


@pytest.fixture
def site(db_url: str, smtp: tuple[Inbox, int]) -> Iterator[Site]:
    inbox, port = smtp
    engine = make_engine(db_url)
    sessions = make_sessions(engine)
    now = datetime.now(UTC)
    with transaction(sessions) as s:
        lyon = registry.create_site(s, slug="lyon", name="Lyon", timezone="Europe/Paris")
        ada = registry.create_member(s, name="Ada", email="ada@example.org")
        bob = registry.create_member(s, name="Bob", email="bob@example.org")
        _, ada_key = registry.create_api_key(s, role=Role.MEMBER, name="ada", member_id=ada.id)
        _, manager_key = registry.create_api_key(s, role=Role.MANAGER, site_id=lyon.id)
        person = accounts.create_person(
            s, email="Ada@Example.org", role=Role.MEMBER, member_id=ada.id, now=now, locale="en"
        )
        root = accounts.create_person(s, email="root@example.org", role=Role.ADMIN, now=now)
        person.password_hash = root.password_hash = PASSWORD_HASH
        ids = {"lyon": lyon.id, "ada": ada.id, "bob": bob.id}
    mail = ServerMail(host="127.0.0.1", port=port, security="none",
                      from_address="ruche@example.org", base_url="http://testserver")  # fmt: skip
    recorder = RecordingPorts()
    app = create_app(sessions=sessions, commands=recorder, listener=recorder, mail=mail)
    yield Site(app, sessions, inbox, ids, {"ada": ada_key, "manager": manager_key})
    engine.dispose()


class TestPasswords:
    """A password opens a session; wrong ones are limited per account and per address."""

    def test_a_right_password_signs_in_and_goes_to_next(self, site):
        client = site.browser()
        answer = site.sign_in(client, "ada@example.org", next="/bookings?day=2")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/bookings?day=2"
        cookie = answer.headers["set-cookie"]
        assert "ruche_session=" in cookie
        assert "HttpOnly" in cookie
        assert "samesite=lax" in cookie.lower()
        assert client.get(f"/members/{site.ids['ada']}").status_code == 200

    def test_next_may_only_be_a_path_here(self, site):
        client = site.browser()
        answer = site.sign_in(client, "ada@example.org", next="//evil.example/x")
        assert answer.headers["location"] == "/"

    def test_wrong_passwords_are_limited_per_account(self, site):
        client = site.browser()
        for _ in range(5):
            answer = site.sign_in(client, "ada@example.org", "not the password")
            assert answer.headers["location"] == "/signin?error=bad_credentials"
        # The right password now is refused too, unchecked, until the window has passed.
        answer = site.sign_in(client, "ada@example.org")
        assert answer.headers["location"] == "/signin?error=rate_limited"
        json = client.post("/signin", json={"email": "ada@example.org", "password": PASSWORD})
        assert json.status_code == 429
        assert "ruche_session" not in client.cookies
        # Another account from the same address is not held back by Ada's.
        assert site.sign_in(client, "root@example.org").headers["location"] == "/"
        metrics = TestClient(site.app).get("/metrics").text
        assert 'ruche_signin_refused_total{reason="account"} 2.0' in metrics

    def test_wrong_passwords_are_limited_per_address(self, site):
        guesser = site.browser("198.51.100.9")
        for n in range(20):
            answer = site.sign_in(guesser, f"nobody{n}@example.org", "guess")
            assert answer.headers["location"] == "/signin?error=bad_credentials"
        assert site.sign_in(guesser, "root@example.org").headers["location"] == (
            "/signin?error=rate_limited"
        )
        # Root, from elsewhere, signs in as usual.
        elsewhere = site.sign_in(site.browser("192.0.2.50"), "root@example.org")
        assert elsewhere.headers["location"] == "/"

    def test_json_clients_get_json(self, site):
        client = TestClient(site.app)
        bad = client.post("/signin", json={"email": "ada@example.org", "password": "nope"})
        assert bad.status_code == 401
        good = client.post("/signin", json={"email": "ada@example.org", "password": PASSWORD})
        assert good.status_code == 200
        assert good.json() == {"signed_in": True}


class TestSessions:
    """The cookie carries a session the server can end; replaying it then gets nothing."""

    def test_a_session_cookie_stops_working_after_sign_out(self, site):
        client = site.browser()
        site.sign_in(client, "ada@example.org")
        stolen = client.cookies["ruche_session"]
        answer = client.post("/signout", data={"csrf_token": site.token(client)})
        assert answer.status_code == 303
        assert answer.headers["location"] == "/signin"
        replay = TestClient(site.app, cookies={"ruche_session": stolen})
        assert replay.get(f"/members/{site.ids['ada']}").status_code == 401

    def test_signing_in_again_ends_the_session_the_browser_had(self, site):
        client = site.browser()
        site.sign_in(client, "ada@example.org")
        planted = client.cookies["ruche_session"]
        site.sign_in(client, "ada@example.org")
        assert client.cookies["ruche_session"] != planted
        replay = TestClient(site.app, cookies={"ruche_session": planted})
        assert replay.get(f"/members/{site.ids['ada']}").status_code == 401

    def test_a_new_password_ends_the_other_sessions(self, site):
        laptop, phone = site.browser(), site.browser()
        for client in (laptop, phone):
            site.sign_in(client, "ada@example.org")
        form = {"current_password": "wrong one", "password": NEW_PASSWORD, "next": "/account"}
        assert laptop.post("/password", data=form).status_code == 403  # no CSRF token
        wrong = laptop.post("/password", data=form | {"csrf_token": site.token(laptop)})
        assert wrong.headers["location"] == "/account?error=bad_credentials"
        form |= {"current_password": PASSWORD, "csrf_token": site.token(laptop)}
        changed = laptop.post("/password", data=form)
        assert changed.headers["location"] == "/account?password=changed"
        assert laptop.get(f"/members/{site.ids['ada']}").status_code == 200
        assert phone.get(f"/members/{site.ids['ada']}").status_code == 401
        assert site.sign_in(site.browser(), "ada@example.org", NEW_PASSWORD).status_code == 303

    def test_a_forged_cookie_is_nobody(self, site):
        client = TestClient(site.app, cookies={"ruche_session": "made-up.value"})
        assert client.get(f"/members/{site.ids['ada']}").status_code == 401

    def test_the_live_page_cookie_is_a_session_not_the_key(self, site):
        client = site.browser()
        key = site.keys["manager"]
        assert client.post("/login", json={"key": key}).status_code == 204
        cookie = client.cookies["ruche_session"]
        assert key not in cookie
        assert client.get("/me").json()["role"] == "manager"
        client.post("/logout", headers={"X-CSRF-Token": site.token(client)})
        replay = TestClient(site.app, cookies={"ruche_session": cookie})
        assert replay.get("/me").status_code == 401


class TestPagesKnowWhoIsSignedIn:
    """Pages show the signed-in person's navigation and sign-out, in their language unless
    this browser's switch chose another."""

    def test_header_and_language(self, site):
        client = site.browser()
        assert 'action="/signout"' not in client.get("/signin").text
        site.sign_in(client, "root@example.org")
        page = client.get("/signin")
        assert 'action="/signout"' in page.text
        assert 'href="/docs"' in page.text, "an admin's navigation"
        member = site.browser()
        site.sign_in(member, "ada@example.org")
        assert member.get("/signin").headers["Content-Language"] == "en", "her own setting"
        member.cookies.set("ruche_lang", "fr")
        assert member.get("/signin").headers["Content-Language"] == "fr", "the switch wins"


class TestCsrf:
    """Every state-changing request by cookie needs the token; bearer keys do not."""

    def test_a_form_posted_without_its_token_is_refused(self, site):
        client = site.browser()
        site.sign_in(client, "ada@example.org")
        assert client.post("/signout", data={}).status_code == 403
        wrong = client.post("/signout", data={"csrf_token": "forged"})
        assert wrong.status_code == 403
        assert client.get(f"/members/{site.ids['ada']}").status_code == 200  # still signed in

    def test_the_sign_in_form_without_its_token_goes_back(self, site):
        client = site.browser()
        answer = client.post("/signin", data={"email": "ada@example.org", "password": PASSWORD})
        assert answer.headers["location"] == "/signin?error=csrf"
        assert "ruche_session" not in client.cookies

    def test_json_posts_by_cookie_need_the_header(self, site):
        client = site.browser()
        site.sign_in(client, "root@example.org")
        body = {"name": "Cleo", "email": "cleo@example.org"}
        assert client.post("/members", json=body).status_code == 403
        headers = {"X-CSRF-Token": site.token(client)}
        assert client.post("/members", json=body, headers=headers).status_code == 201

    def test_bearer_keys_need_no_token(self, site):
        client = TestClient(site.app)
        answer = client.get("/me", headers={"Authorization": f"Bearer {site.keys['ada']}"})
        assert answer.status_code == 200
        assert "ruche_csrf" not in answer.cookies


class TestLinks:
    """One-time links by e-mail: once, before they expire; the same answer for anyone."""

    def test_a_sign_in_link_works_once(self, site):
        client = site.browser()
        answer = client.post("/signin/link", data={"email": "ada@example.org",
                                                   "csrf_token": site.token(client)})  # fmt: skip
        assert answer.headers["location"] == "/signin?sent=link"
        link = site.inbox.link_to("ada@example.org")
        assert link.startswith("/signin/link/")
        followed = client.get(link)
        assert followed.headers["location"] == "/"
        assert client.get(f"/members/{site.ids['ada']}").status_code == 200
        again = site.browser().get(link)
        assert again.headers["location"] == "/signin?error=link_expired"

    def test_a_mangled_link_is_an_expired_one(self, site):
        client = site.browser()
        for path in ("/signin/link/abc", "/signin/link/" + "x" * 150, "/password/reset/a.b"):
            assert client.get(path).headers["location"] == "/signin?error=link_expired"

    def test_an_expired_link_does_not_sign_in(self, site):
        client = site.browser()
        client.post("/signin/link", data={"email": "ada@example.org",
                                          "csrf_token": site.token(client)})  # fmt: skip
        link = site.inbox.link_to("ada@example.org")
        with transaction(site.sessions) as s:  # the 15 minutes pass
            s.execute(update(OneTimeTokenRow).values(
                expires_at=datetime.now(UTC) - timedelta(seconds=1)))  # fmt: skip
        assert client.get(link).headers["location"] == "/signin?error=link_expired"
        assert "ruche_session" not in client.cookies

    def test_an_unknown_address_gets_the_same_answer_and_no_mail(self, site):
        client = site.browser()
        answer = client.post("/signin/link", data={"email": "eve@example.org",
                                                   "csrf_token": site.token(client)})  # fmt: skip
        assert answer.headers["location"] == "/signin?sent=link"
        client.post("/signin/link", data={"email": "root@example.org",
                                          "csrf_token": site.token(client)})  # fmt: skip
        site.inbox.link_to("root@example.org")
        assert all(m["To"] != "eve@example.org" for m in site.inbox.messages)

    def test_a_mail_server_down_changes_nothing_in_the_answer(self, site, caplog):
        mail = ServerMail(
            host="127.0.0.1", port=free_port(), security="none",
            from_address="ruche@example.org", base_url="http://testserver",
        )  # fmt: skip
        recorder = RecordingPorts()
        app = create_app(sessions=site.sessions, commands=recorder, listener=recorder, mail=mail)
        client = TestClient(app, follow_redirects=False)
        client.get("/healthz")
        token = app.state.people.signer.get().csrf_token(client.cookies["ruche_csrf"])
        answer = client.post("/signin/link", data={"email": "ada@example.org", "csrf_token": token})
        assert answer.headers["location"] == "/signin?sent=link"
        assert "cannot be reached" in caplog.text

    def test_the_mail_is_in_the_person_s_language(self, site):
        client = site.browser()
        for who in ("ada@example.org", "root@example.org"):
            client.post("/signin/link", data={"email": who, "csrf_token": site.token(client)})
            site.inbox.link_to(who)
        subjects = {m["To"]: m["Subject"] for m in site.inbox.messages}
        assert subjects["ada@example.org"] == "Your Ruche sign-in link"
        assert subjects["root@example.org"] == "Votre lien de connexion à Ruche"

    def test_a_password_reset_by_mail_ends_every_session(self, site):
        laptop, phone = site.browser(), site.browser()
        for client in (laptop, phone):
            site.sign_in(client, "ada@example.org")
        old_cookies = [c.cookies["ruche_session"] for c in (laptop, phone)]
        forgot = {"email": "ada@example.org", "csrf_token": site.token(laptop)}
        answer = laptop.post("/password/forgot", data=forgot)
        assert answer.status_code == 303
        link = site.inbox.link_to("ada@example.org")
        page = laptop.get(link)
        assert page.headers["location"].startswith("/password/reset?token=")
        token = link.rsplit("/", 1)[1]
        weak = laptop.post("/password/reset", data={"token": token, "password": "short",
                                                    "csrf_token": site.token(laptop)})  # fmt: skip
        assert "error=weak_password" in weak.headers["location"]
        done = laptop.post("/password/reset", data={"token": token, "password": NEW_PASSWORD,
                                                    "csrf_token": site.token(laptop)})  # fmt: skip
        assert done.headers["location"] == "/signin?reset=done"
        for cookie in old_cookies:
            replay = TestClient(site.app, cookies={"ruche_session": cookie})
            assert replay.get(f"/members/{site.ids['ada']}").status_code == 401
        fresh = site.browser()
        assert site.sign_in(fresh, "ada@example.org").headers["location"] == (
            "/signin?error=bad_credentials"
        )
        assert site.sign_in(fresh, "ada@example.org", NEW_PASSWORD).headers["location"] == "/"
        used = laptop.post("/password/reset", data={"token": token, "password": PASSWORD,
                                                    "csrf_token": site.token(laptop)})  # fmt: skip
        assert used.headers["location"] == "/signin?error=link_expired"


class TestScope:
    """A person signed in is the same Principal as a key of the same role."""

    def test_a_member_signed_in_reaches_what_its_key_reaches(self, site):
        browser = site.browser()
        site.sign_in(browser, "ada@example.org")
        key = {"Authorization": f"Bearer {site.keys['ada']}"}
        machine = TestClient(site.app)
        urls = [
            f"/members/{site.ids['ada']}",
            f"/members/{site.ids['bob']}",
            f"/sites/{site.ids['lyon']}",
            "/members",
            "/api-keys",
            f"/bookings?member_id={site.ids['bob']}",
        ]
        by_cookie = [browser.get(url).status_code for url in urls]
        by_key = [machine.get(url, headers=key).status_code for url in urls]
        assert by_cookie == by_key
        assert by_cookie[1] == 403


def test_staff_accounts_from_the_command_line(tmp_path, monkeypatch, capsys):
    """`ruche admin person add|password`, in this process: the password from stdin."""
    db = f"sqlite:///{tmp_path / 'ruche.db'}"

    def ruche(*args: str, stdin: str = "") -> int:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        return main([*args, "--database", db] if args[0] == "admin" else list(args))

    assert ruche("server", "migrate", "--database", db) == 0
    assert ruche("admin", "site", "--slug", "lyon", "--name", "Lyon",
                 "--timezone", "Europe/Paris") == 0  # fmt: skip
    assert ruche("admin", "person", "add", "--email", "max@example.org", "--role", "manager",
                 "--site", "lyon") == 0  # fmt: skip
    assert ruche("admin", "person", "add", "--email", "MAX@example.org", "--role", "admin") == 2
    assert "already has an account" in capsys.readouterr().err
    assert ruche("admin", "person", "password", "--email", "max@example.org", stdin="short\n") == 2
    assert "too short" in capsys.readouterr().err
    assert ruche("admin", "person", "password", "--email", "max@example.org",
                 stdin=f"{PASSWORD}\n") == 0  # fmt: skip
    assert "password of max@example.org set" in capsys.readouterr().out
    engine = make_engine(db)
    with transaction(make_sessions(engine)) as s:
        person = accounts.find_person(s, "max@example.org")
        assert person is not None
        assert person.role is Role.MANAGER
        assert person.password_hash is not None
        assert person.password_hash.startswith("$argon2id$")
    engine.dispose()
