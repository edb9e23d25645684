"""The page shell over HTTP: languages, messages, forms and the layout's parts.

A small app with the pages' routers only: the pages need no database."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html.parser import HTMLParser

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles
from fastapi.testclient import TestClient

from ruche.server.api.pages import apidocs, signin
from ruche.server.api.pages.rendering import (
    ASSETS,
    LANGUAGE_COOKIE,
    STATIC,
    Viewer,
    environment,
    render,
)
from ruche.server.i18n import Formats
from ruche.server.storage.enums import Role


class Forms(HTMLParser):
    """Each form's action with the names and values of its fields, and the page's lang."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.forms: dict[str, dict[str, str]] = {}
        self.lang = ""
        self._action: str | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "html":
            self.lang = found.get("lang") or ""
        elif tag == "form":
            self._action = found.get("action") or ""
            self.forms[self._action] = {}
        elif tag == "input" and self._action is not None:
            self.forms[self._action][found.get("name") or ""] = found.get("value") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._action = None


def app(csrf: str | None = None, viewer: Viewer | None = None) -> FastAPI:
    pages = FastAPI(docs_url=None, redoc_url=None)
    pages.include_router(signin.router)
    pages.include_router(apidocs.router)
    pages.mount(ASSETS, StaticFiles(directory=STATIC), name="assets")

    @pages.get("/")
    def home() -> Response:
        return Response(status_code=204)

    @pages.get("/as-viewer")
    def as_viewer(request: Request) -> Response:
        return render(request, "signin.html", viewer=viewer, message=None, next="/")

    if csrf is not None:

        @pages.middleware("http")
        async def token(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            request.state.csrf_token = csrf
            return await call_next(request)

    return pages


@pytest.fixture
def client() -> TestClient:
    return TestClient(app())


def message(html: str) -> str | None:
    found = re.search(r'<p class="message message-\w+" role="\w+">([^<]*)</p>', html)
    return found.group(1) if found else None


class TestLanguage:
    """French by default; English by Accept-Language, by the switch, or by the person."""

    def test_french_by_default(self, client):
        page = client.get("/signin")
        assert page.headers["content-language"] == "fr"
        assert Forms(page.text).lang == "fr"
        assert "<h1>Se connecter</h1>" in page.text

    def test_english_by_accept_language(self, client):
        page = client.get("/signin", headers={"Accept-Language": "en-GB,en;q=0.9,fr;q=0.5"})
        assert Forms(page.text).lang == "en"
        assert "<h1>Sign in</h1>" in page.text
        assert "Accept-Language" in page.headers["vary"]

    def test_switch_sets_a_cookie_and_goes_back(self, client):
        back = client.get("/language/en?next=/signin%3Ferror%3Dcsrf", follow_redirects=False)
        assert back.status_code == 303
        assert back.headers["location"] == "/signin?error=csrf"
        assert back.cookies[LANGUAGE_COOKIE] == "en"
        page = client.get("/signin", headers={"Accept-Language": "fr"})
        assert Forms(page.text).lang == "en", "the switch outranks the browser"

    def test_switch_refuses_unknown_locales_and_other_sites(self, client):
        back = client.get("/language/de?next=//evil.example/x", follow_redirects=False)
        assert back.headers["location"] == "/"
        assert LANGUAGE_COOKIE not in back.cookies

    def test_switch_links_lead_back_here(self, client):
        page = client.get("/signin?error=csrf").text
        assert 'href="/language/en?next=/signin%3Ferror%3Dcsrf"' in page
        assert re.search(r'lang="fr" hreflang="fr" aria-current="true"', page)

    def test_the_switch_in_this_browser_outranks_a_persons_setting(self):
        client = TestClient(app(viewer=Viewer("Ada", Role.MEMBER, locale="en")))
        assert Forms(client.get("/as-viewer").text).lang == "en", "her setting, no switch"
        client.cookies.set(LANGUAGE_COOKIE, "fr")
        assert Forms(client.get("/as-viewer").text).lang == "fr"


MESSAGES = [
    ("error=bad_credentials", "E-mail ou mot de passe incorrect.", "Wrong email or password."),
    ("error=rate_limited", "Trop de tentatives.", "Too many attempts."),
    ("error=csrf", "Ce formulaire avait expiré.", "This form had expired."),
    ("error=link_expired", "Ce lien a expiré", "This link has expired"),
    ("sent=link", "un lien de connexion est en route", "a sign-in link is on its way"),
    ("sent=reset", "un lien pour choisir un nouveau", "a link to choose a new password"),
    ("reset=done", "Votre mot de passe a été modifié.", "Your password has been changed."),
]


class TestSigninMessages:
    """Each code the sign-in endpoints redirect with is said in French and in English."""

    @pytest.mark.parametrize(("query", "french", "english"), MESSAGES)
    def test_message(self, client, query, french, english):
        assert french in (message(client.get(f"/signin?{query}").text) or "")
        english_page = client.get(f"/signin?{query}", headers={"Accept-Language": "en"})
        assert english in (message(english_page.text) or "")

    def test_errors_are_alerts_and_notices_status(self, client):
        assert 'role="alert"' in client.get("/signin?error=csrf").text
        assert 'role="status"' in client.get("/signin?reset=done").text

    @pytest.mark.parametrize("query", ["", "error=nope", "sent=nope", "error=%3Cb%3E"])
    def test_unknown_codes_say_nothing(self, client, query):
        page = client.get(f"/signin?{query}")
        assert page.status_code == 200
        assert message(page.text) is None


class TestForms:
    """The forms post what the sign-in endpoints read, with the CSRF token when there is one."""

    def test_signin_forms(self, client):
        forms = Forms(client.get("/signin?next=/billing").text).forms
        assert forms["/signin"] == {
            "csrf_token": "",
            "next": "/billing",
            "email": "",
            "password": "",
        }
        assert forms["/signin/link"] == {"csrf_token": "", "email": ""}

    def test_csrf_token_from_the_middleware(self):
        forms = Forms(TestClient(app(csrf="t0k3n")).get("/signin").text).forms
        assert {form["csrf_token"] for form in forms.values()} == {"t0k3n"}

    @pytest.mark.parametrize(
        "next_", ["//evil.example", "https://evil.example/", "/\\evil.example", "javascript:x"]
    )
    def test_next_stays_on_this_server(self, client, next_):
        forms = Forms(client.get("/signin", params={"next": next_}).text).forms
        assert forms["/signin"]["next"] == "/"

    def test_next_is_escaped(self, client):
        page = client.get("/signin", params={"next": '/x"><script>'}).text
        assert "<script>" not in page
        assert Forms(page).forms["/signin"]["next"] == '/x"><script>'

    def test_forgot_password(self, client):
        page = client.get("/password/forgot", headers={"Accept-Language": "en"})
        assert Forms(page.text).forms["/password/forgot"] == {"csrf_token": "", "email": ""}
        assert "Forgot your password?" in page.text

    def test_reset_password_carries_its_token(self, client):
        forms = Forms(client.get("/password/reset?token=abc-123").text).forms
        assert forms["/password/reset"] == {"csrf_token": "", "token": "abc-123", "password": ""}

    def test_reset_password_without_a_token_points_to_forgot(self, client):
        page = client.get("/password/reset").text
        assert "/password/reset" not in Forms(page).forms
        assert 'href="/password/forgot"' in page


class TestLayout:
    """The header: navigation by role, sign-out for a signed-in person, a skip link."""

    def test_anonymous_reader_has_no_navigation_nor_sign_out(self, client):
        page = client.get("/signin").text
        assert 'class="main-nav"' not in page
        assert "/signout" not in page
        assert '<a class="skip-link" href="#main">' in page
        assert '<main id="main"' in page

    @pytest.mark.parametrize(
        ("role", "links"),
        [(Role.MEMBER, []), (Role.MANAGER, ["/"]), (Role.ADMIN, ["/", "/docs"])],
    )
    def test_navigation_by_role(self, role, links):
        # The app serves `/` and `/docs` of all the links: a link shows once its page exists.
        page = TestClient(app(csrf="t", viewer=Viewer("Ada", role))).get("/as-viewer").text
        nav = re.search(r'<nav class="main-nav".*?</nav>', page, re.DOTALL)
        assert re.findall(r'<li><a href="([^"]*)"', nav.group(0) if nav else "") == links
        assert Forms(page).forms["/signout"] == {"csrf_token": "t"}

    def test_pages_are_neither_cached_nor_framed(self, client):
        page = client.get("/signin")
        assert page.headers["cache-control"] == "no-store"
        assert page.headers["content-security-policy"] == "frame-ancestors 'none'"

    def test_stylesheet_is_served(self, client):
        css = client.get("/assets/pages.css")
        assert css.status_code == 200
        assert css.headers["content-type"].startswith("text/css")


class TestFilters:
    """Templates write dates, times, durations and amounts through the reader's Formats."""

    def test_french(self):
        template = environment("fr").from_string(
            "{{ at|datetime }} · {{ at|time }} · {{ at|date('long') }} · {{ price|amount }}"
            " · {{ spent|duration }} · {{ _('Sign in') }}"
        )
        text = template.render(
            formats=Formats("fr", "Europe/Paris"),
            at=datetime(2026, 12, 7, 23, 30, tzinfo=UTC),
            price=Decimal("1234.5"),
            spent=timedelta(minutes=95),
        )
        assert text == (
            "08/12/2026 00:30 · 00:30 · 8 décembre 2026 · 1\u202f234,50\xa0€"
            " · 1\u202fh 35\xa0min · Se connecter"
        )

    def test_trans_blocks_and_escaped_values(self):
        template = environment("fr").from_string(
            "{% trans %}Sign in{% endtrans %} · {{ _('Welcome, %(name)s', name=who) }}"
        )
        text = template.render(formats=Formats("fr"), who="<Ada>")
        assert text == "Se connecter · Welcome, &lt;Ada&gt;"

    def test_english(self):
        template = environment("en").from_string("{{ price|amount('GBP') }} {{ _('Sign in') }}")
        assert template.render(formats=Formats("en"), price=3) == "£3.00 Sign in"


class TestApiDocs:
    """/docs and /redoc load their scripts and styles from this server only."""

    @pytest.mark.parametrize("path", ["/docs", "/redoc"])
    def test_no_cdn(self, client, path):
        page = client.get(path).text
        assert not re.search(r"(src|href)=['\"]?https?:", page), page
        assert "cdn." not in page
        assert "fonts.googleapis" not in page
        for url in re.findall(r"(?:src|href)=['\"]?(/assets/[^'\" >]+)", page):
            assert client.get(url).status_code == 200, url
