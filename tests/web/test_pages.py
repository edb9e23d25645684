"""The pages for people in Chromium: the sign-in page in French and English, accessible
(axe-core) at desktop and phone sizes, its messages, and /docs and /redoc with nothing
loaded off this machine. Fixtures: tests/web/conftest.py."""

from __future__ import annotations

import pytest

MESSAGES = {
    "error=bad_credentials": ("E-mail ou mot de passe incorrect.", "Wrong email or password."),
    "error=rate_limited": (
        "Trop de tentatives. Attendez quelques minutes, puis réessayez.",
        "Too many attempts. Wait a few minutes, then try again.",
    ),
    "error=csrf": (
        "Ce formulaire avait expiré. Veuillez réessayer.",
        "This form had expired. Please try again.",
    ),
    "error=link_expired": (
        "Ce lien a expiré ou a déjà servi. Demandez-en un nouveau ci-dessous.",
        "This link has expired or has already been used. Ask for a new one below.",
    ),
    "sent=link": (
        "Si un compte utilise cette adresse, un lien de connexion est en route."
        " Consultez vos e-mails.",
        "If an account uses this address, a sign-in link is on its way. Check your mail.",
    ),
    "reset=done": (
        "Votre mot de passe a été modifié. Connectez-vous avec lui dès maintenant.",
        "Your password has been changed. Sign in with it now.",
    ),
}


class TestSigninPage:
    """The sign-in page reads in French by default and in English when asked, passes axe and
    fits a phone."""

    @pytest.mark.parametrize("size", ["desktop", "phone"])
    def test_french_by_default(self, base, browse, offline, audit, size):
        # A browser asking for a language Ruche does not speak (Chromium asks for en-US
        # unless told otherwise) gets the default.
        page = browse(size, locale="de-DE")
        page.goto(base + "/signin?error=bad_credentials")
        assert page.get_attribute("html", "lang") == "fr"
        assert page.inner_text("h1") == "Se connecter"
        assert page.get_by_label("Mot de passe", exact=True).is_visible()
        assert page.get_by_role("alert").inner_text() == "E-mail ou mot de passe incorrect."
        audit(page, f"signin-fr-{size}")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the page scrolls sideways at {size} size: {width}"
        assert offline.blocked == []

    @pytest.mark.parametrize("size", ["desktop", "phone"])
    def test_english_by_accept_language(self, base, browse, audit, size):
        page = browse(size, locale="en-GB")
        page.goto(base + "/signin?sent=link")
        assert page.get_attribute("html", "lang") == "en"
        assert page.inner_text("h1") == "Sign in"
        assert page.get_by_role("button", name="Send me a sign-in link").is_visible()
        audit(page, f"signin-en-{size}")

    def test_switch_to_english_and_back(self, base, browse):
        page = browse(locale="fr-FR")
        page.goto(base + "/signin?error=csrf")
        page.get_by_role("link", name="English").click()
        page.wait_for_url("**/signin?error=csrf")
        assert page.get_attribute("html", "lang") == "en"
        assert page.get_by_role("alert").inner_text() == MESSAGES["error=csrf"][1]
        page.goto(base + "/password/forgot")
        assert page.inner_text("h1") == "Forgot your password?", "the choice is kept"
        page.get_by_role("link", name="Français").click()
        page.wait_for_url("**/password/forgot")
        assert page.inner_text("h1") == "Mot de passe oublié\u202f?"

    def test_skip_link_is_first_and_moves_focus(self, base, browse):
        page = browse(locale="fr-FR")
        page.goto(base + "/signin")
        page.keyboard.press("Tab")
        skip = page.locator(":focus")
        assert skip.inner_text() == "Aller au contenu principal"
        assert skip.is_visible()
        page.keyboard.press("Enter")
        assert page.evaluate("document.activeElement.id") == "main"

    def test_messages_in_both_languages(self, base, browse):
        pages = {"fr": browse(locale="fr-FR"), "en": browse(locale="en-US")}
        for query, texts in MESSAGES.items():
            for page, text in zip(pages.values(), texts, strict=True):
                page.goto(f"{base}/signin?{query}")
                assert page.locator(".message").inner_text() == text, query


class TestSignedInHeader:
    """The header of a signed-in admin (navigation, language switch, sign-out) fits and
    passes axe at both sizes."""

    @pytest.mark.parametrize("size", ["desktop", "phone"])
    def test_admin(self, shell_base, browse, audit, size):
        page = browse(size, locale="fr-FR")
        page.goto(shell_base + "/shell/admin")
        nav = page.get_by_role("navigation", name="Principale")
        assert nav.get_by_role("link").all_inner_texts() == [
            "Plan en direct", "Alarmes", "Membres", "Réservations", "Invités", "Utilisation",
            "Factures", "Journal d'audit", "API",
        ]  # fmt: skip
        assert page.get_by_role("button", name="Se déconnecter").is_visible()
        audit(page, f"header-admin-fr-{size}")
        width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        assert width[0] <= width[1], f"the header scrolls sideways at {size} size: {width}"


class TestPasswordPages:
    """The forgot and reset pages pass axe too."""

    @pytest.mark.parametrize(
        ("path", "name"),
        [("/password/forgot", "forgot"), ("/password/reset?token=abc", "reset")],
    )
    def test_accessible(self, base, browse, audit, path, name):
        for size in ("desktop", "phone"):
            page = browse(size)
            page.goto(base + path)
            audit(page, f"password-{name}-fr-{size}")


class TestApiDocs:
    """/docs and /redoc render the API with every request off this machine refused, and
    nothing on them trips their Content-Security-Policy."""

    @pytest.mark.parametrize(
        ("path", "operation"),
        [("/docs", ".opblock-summary-path"), ("/redoc", "[data-section-id^='operation/']")],
    )
    def test_renders_the_operations_offline(self, base, browse, offline, path, operation):
        page = browse()
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(base + path)
        page.wait_for_selector(operation, timeout=10_000)
        assert page.locator(operation).count() > 20
        assert page.get_by_text("/sites/{site_id}", exact=False).count() > 0
        assert offline.blocked == []
        # ReDoc's logo from Redocly's CDN is refused by the policy, and hides itself.
        assert [text for text in errors if "logo-mini" not in text] == []
